"""Assemble README.md and benchmarks/RESULTS.md from the per-part sections.

Run: python docs/assemble_readme.py
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def assemble(sources: list[Path], target: Path, header: str = "") -> None:
    parts = [header] if header else []
    parts += [p.read_text().strip() + "\n" for p in sources]
    target.write_text("\n".join(parts))


if __name__ == "__main__":
    assemble(sorted((ROOT / "docs" / "sections").glob("*.md")), ROOT / "README.md")
    results = sorted((ROOT / "benchmarks" / "results").glob("*.md"))
    header = (
        "# Benchmark results\n\nFigures measured on the project machine (2 CPU cores, no GPU) unless stated;\n"
        "each section gives the exact command that produced it. PNG plots are beside this file in results/.\n"
    )
    assemble(results, ROOT / "benchmarks" / "RESULTS.md", header)
