import pytest
import torch

from pantiny.models import MODELS, build_model, count_parameters


@pytest.mark.parametrize("name,expected", [("pantiny-big", 81_744), ("pantiny-small", 48_269)])
def test_parameter_counts_match_the_paper(name, expected):
    assert count_parameters(build_model(name)) == expected


@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_shape_and_global_residual(name):
    torch.manual_seed(0)
    model = build_model(name).eval()
    ms_up, pan = torch.rand(2, 4, 40, 24), torch.rand(2, 1, 40, 24)
    out = model(ms_up, pan)
    assert out.shape == (2, 4, 40, 24)
    assert not torch.allclose(out, ms_up)
    # With the output convolution zeroed, only the global residual (the upsampled MS) remains.
    torch.nn.init.zeros_(model.output.weight)
    assert torch.equal(model(ms_up, pan), ms_up)


def test_pan_actually_drives_the_output():
    torch.manual_seed(0)
    model = build_model("pantiny-big").eval()
    ms_up = torch.rand(1, 4, 32, 32)
    a = model(ms_up, torch.zeros(1, 1, 32, 32))
    b = model(ms_up, torch.ones(1, 1, 32, 32))
    assert (a - b).abs().max() > 1e-3


def test_unknown_architecture_is_named():
    with pytest.raises(ValueError, match="unknown model architecture 'resnet'"):
        build_model("resnet")
