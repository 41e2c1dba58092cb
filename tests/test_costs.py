"""``semid grid --dry-run``'s GPU-hours estimate: sized from the config, labelled an estimate."""

from pathlib import Path

from rich.console import Console

from semid.cli.tables import print_gpu_hours
from semid.costs import calibrate, cell_gpu_hours
from semid.grid import load_grid

GRIDS = Path(__file__).parents[1] / "grids"


def test_paper_preset_costs_more_than_cpu_preset_and_prints_an_estimate():
    paper = load_grid(GRIDS / "paper-table1.yaml", "paper")
    cpu = load_grid(GRIDS / "paper-table1.yaml", "cpu")
    big, small = cell_gpu_hours(paper.cells[0].config), cell_gpu_hours(cpu.cells[0].config)
    assert big["parameters"] > 50 * small["parameters"] and big["gpu_hours"] > small["gpu_hours"]
    console = Console(record=True, width=200)
    total = print_gpu_hours(paper, console=console)
    text = console.export_text()
    assert "ESTIMATED" in text and "An estimate" in text
    assert total == sum(cell_gpu_hours(c.config)["gpu_hours"] for c in paper.cells) > 0


def test_calibration_inverts_the_cost_model():
    assert abs(calibrate(1000, 1e8, 20) - 12.0) < 1e-9  # 6 * 1e8 * 20 * 1000 FLOP/s
