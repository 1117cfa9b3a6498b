"""Issue #14: one error tree, one options module, one argument order, one of each helper."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import REPO, write_tif

import pantiny
from pantiny import errors
from pantiny.choices import CLASSICAL_METHODS
from pantiny.cli import main
from pantiny.synthetic import make_scene


def test_error_tree_keeps_builtin_types():
    assert issubclass(errors.InputError, ValueError) and issubclass(errors.InputError, errors.PantinyError)
    assert issubclass(errors.GeoreferenceError, errors.InputError)
    assert issubclass(errors.ConfigError, ValueError)
    assert issubclass(errors.WeightsError, RuntimeError) and issubclass(errors.ModelOutputError, RuntimeError)
    assert issubclass(errors.OutputLockedError, FileExistsError)
    from pantiny.weights import WeightsError

    assert WeightsError is errors.WeightsError
    src = "".join(p.read_text() for p in (REPO / "pantiny").rglob("*.py"))
    assert len(re.findall(r"raise (ValueError|RuntimeError|KeyError)\(", src)) == 0


def test_one_atomic_writer_and_one_device_picker():
    for p in (REPO / "pantiny").rglob("*.py"):
        text = p.read_text()
        if p.name != "_atomic.py":
            assert "mkstemp" not in text and "os.replace(" not in text, p
        if p.name != "devices.py":
            assert "def pick_device" not in text and "def _pick_device" not in text, p


@pytest.fixture()
def pair(tmp_path):
    pan, ms, _ = make_scene(64, "ikonos", seed=4)
    return (write_tif(tmp_path / "p.tif", pan, gsd=0.5, tags={"SENSOR": "IKONOS"}),
            write_tif(tmp_path / "m.tif", ms, gsd=2.0, tags={"SENSOR": "IKONOS"}))


def test_internal_bugs_keep_their_traceback_user_errors_are_one_line(pair, tmp_path, monkeypatch, capsys):
    pan, ms = pair

    def broken(*a, **k):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("pantiny.api.pansharpen", broken)
    with pytest.raises(ZeroDivisionError):  # not swallowed into "pantiny: error: ..."
        main(["fuse", str(pan), str(ms), str(tmp_path / "o.tif"), "--method", "brovey"])
    monkeypatch.undo()
    rc = main(["fuse", str(pan), str(tmp_path / "missing.tif"), str(tmp_path / "o.tif"), "--method", "brovey"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and err[0].startswith("pantiny: error: no such raster file")


@pytest.mark.parametrize("argv", [["fuse", "P", "M", "O"], ["qnr", "P", "M", "F"]])
@pytest.mark.parametrize("bad", ["a,b,c,d", "1,2,3", "1,1,2,3"])
def test_bands_is_parsed_once_with_one_message(argv, bad, capsys):
    with pytest.raises(SystemExit) as e:
        main([*argv, "--bands", bad])
    assert e.value.code == 2
    assert "R,G,B,NIR" in capsys.readouterr().err


def test_sensor_option_is_validated_the_same_everywhere(capsys):
    for argv in (["fuse", "P", "M", "O"], ["qnr", "P", "M", "F"], ["score-rr", "F", "R"]):
        with pytest.raises(SystemExit):
            main([*argv, "--sensor", "landsat9"])
        assert "unknown sensor 'landsat9'" in capsys.readouterr().err


def test_method_choices_come_from_one_list(capsys):
    from pantiny.classical import METHODS

    assert tuple(sorted(METHODS)) == CLASSICAL_METHODS
    with pytest.raises(SystemExit):
        main(["fuse", "P", "M", "O", "--method", "nope"])
    assert "invalid choice" in capsys.readouterr().err


def test_qnr_takes_pan_ms_fused_like_pansharpen_and_warns_on_the_old_order():
    pan, ms, _ = make_scene(128, "ikonos", seed=8)
    fused = pantiny.pansharpen(pan, ms, method="gsa", sensor="ikonos")
    new = pantiny.qnr(pan, ms, fused)
    with pytest.warns(FutureWarning, match=r"qnr\(fused, ms, pan\) is deprecated"):
        old = pantiny.qnr(fused, ms, pan)
    assert (new.d_lambda, new.d_s, new.qnr) == (old.d_lambda, old.d_s, old.qnr)
    from pantiny.metrics import d_s

    assert d_s(pan, ms, fused) == new.d_s
    assert not np.isnan(new.qnr)
