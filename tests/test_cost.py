import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from featflow.analysis.cost import PAPER_INVERSE_R, cost_table, count_multiply_adds, feature_net_cost
from featflow.cli import main


@pytest.fixture(scope="module")
def table():
    return cost_table()


def test_all_six_cells_within_two_percent_of_the_paper(table):
    assert len(table.cells) == 6
    for cell in table.cells:
        assert cell.paper == PAPER_INVERSE_R[(cell.feature_net, cell.flow_net)]
        assert abs(cell.relative_error) < 0.02, cell


def test_network_costs_match_the_reference_counts(table):
    # facts.md section 4: ResNet-50 ~119.0 G, ResNet-101 ~164.3 G, FlowNet ~12.90 G, Half ~3.53 G,
    # Inception ~1.73 G multiply-adds at 600x1000
    expected = {"resnet50": 119.0, "resnet101": 164.3, "flownet": 12.90, "flownet_half": 3.53,
                "flownet_inception": 1.73}
    for name, giga in expected.items():
        assert table.multiply_adds[name] / 1e9 == pytest.approx(giga, rel=0.01), name


def test_counter_agrees_with_torch_flop_counter():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.ConvTranspose2d(8, 4, 4, 2, 1))
    x = torch.randn(1, 3, 20, 30)
    ours = count_multiply_adds(net, x)
    # conv: 10*15 px * 9 * 3 * 8; deconv: input 10*15 px * 16 * 8 * 4
    assert ours == 150 * 9 * 3 * 8 + 150 * 16 * 8 * 4
    with FlopCounterMode(display=False) as counter:
        net(x)
    assert counter.get_total_flops() == 2 * ours  # torch counts 2 FLOPs per multiply-add


def test_feature_net_cost_scales_with_pixels():
    small, big = feature_net_cost("resnet18", 160, 160), feature_net_cost("resnet18", 320, 320)
    assert big / small == pytest.approx(4.0, rel=0.05)


def test_cli_json_has_every_cell(capsys):
    assert main(["bench", "flops", "--json"]) == 0
    import json

    data = json.loads(capsys.readouterr().out)
    assert {(c["feature_net"], c["flow_net"]) for c in data["cells"]} == set(PAPER_INVERSE_R)
    for c in data["cells"]:
        assert {"paper", "inverse_r", "relative_error"} <= set(c)


def test_cli_table_and_report(tmp_path, capsys):
    assert main(["bench", "flops", "--report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "95.24" in out and "flownet_inception" in out
    assert "Reproduce with" in (tmp_path / "cost.md").read_text()
    assert (tmp_path / "cost.json").is_file()
