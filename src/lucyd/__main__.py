from lucyd.cli.main import main

main()
