import json
import shutil

import pytest
import torch

from pantiny.models import build_model
from pantiny.weights import (
    WeightsError,
    load_manifest,
    load_model,
    manifest_entry,
    save_weights,
    sha256_file,
    upsert_manifest_entry,
)


def _entry(path, name="test-big"):
    return {"name": name, "architecture": "pantiny-big", "file": str(path), "sha256": sha256_file(path),
            "size": path.stat().st_size, "bands": ["R", "G", "B", "NIR"]}


@pytest.fixture()
def manifest(tmp_path, random_weights):
    w = tmp_path / "w.safetensors"
    shutil.copy(random_weights, w)
    m = tmp_path / "manifest.json"
    upsert_manifest_entry(_entry(w), m)
    return m, w


def test_round_trip_through_manifest(manifest):
    m, w = manifest
    model = load_model("test-big", manifest_path=m)
    torch.manual_seed(0)
    ref = build_model("pantiny-big")
    for (k, a), (_, b) in zip(model.state_dict().items(), ref.state_dict().items()):
        assert torch.equal(a, b), k
    assert not model.training


def test_tampered_file_is_refused(manifest):
    m, w = manifest
    data = bytearray(w.read_bytes())
    data[-5] ^= 0x01  # one flipped bit inside a tensor, size unchanged
    w.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256"):
        load_model("test-big", manifest_path=m)


def test_truncated_file_is_refused(manifest):
    m, w = manifest
    w.write_bytes(w.read_bytes()[:1000])
    with pytest.raises(WeightsError, match="truncated"):
        load_model("test-big", manifest_path=m)


def test_missing_file_says_so_plainly(tmp_path, manifest):
    m, w = manifest
    w.unlink()
    with pytest.raises(WeightsError, match="not present"):
        load_model("test-big", manifest_path=m)
    with pytest.raises(WeightsError, match="no weights named 'nope'"):
        manifest_entry("nope", m)


def test_hub_source_offline_fails_clearly(tmp_path, manifest, monkeypatch):
    m, w = manifest
    entry = _entry(w, "hub-big")
    entry["file"] = str(tmp_path / "absent.safetensors")
    entry["hf"] = {"repo_id": "pantiny/not-a-real-repo", "revision": "main", "filename": "x.safetensors"}
    upsert_manifest_entry(entry, m)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match="could not be fetched from Hugging Face repo 'pantiny/not-a-real-repo'"):
        load_model("hub-big", manifest_path=m)


def test_hub_download_is_verified(tmp_path, manifest, monkeypatch):
    """A file served by the hub is still checked against the manifest's sha256."""
    import huggingface_hub

    m, w = manifest
    fake = tmp_path / "served.safetensors"
    shutil.copy(w, fake)
    data = bytearray(fake.read_bytes())
    data[-5] ^= 0x01
    fake.write_bytes(bytes(data))
    entry = _entry(w, "hub-big")
    entry["file"] = str(tmp_path / "absent.safetensors")
    entry["hf"] = {"repo_id": "org/repo", "revision": "abc", "filename": "x.safetensors"}
    upsert_manifest_entry(entry, m)
    calls = []

    def fake_download(repo_id, filename, revision=None, **kw):
        calls.append((repo_id, filename, revision))
        return str(fake)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    with pytest.raises(WeightsError, match="sha256"):
        load_model("hub-big", manifest_path=m)
    assert calls == [("org/repo", "x.safetensors", "abc")]


def test_architecture_mismatch_and_pickle_are_refused(tmp_path, random_weights):
    with pytest.raises(WeightsError, match="do not fit architecture 'pantiny-small'"):
        load_model(str(random_weights), architecture="pantiny-small")
    pickled = tmp_path / "model.safetensors"
    torch.save(build_model("pantiny-big").state_dict(), pickled)
    with pytest.raises(WeightsError, match="cannot read safetensors"):
        load_model(str(pickled))
    with pytest.raises(FileNotFoundError):
        load_model(str(tmp_path / "nope.safetensors"))


def test_upsert_replaces_by_name(tmp_path, random_weights):
    m = tmp_path / "m.json"
    upsert_manifest_entry(_entry(random_weights, "a"), m)
    upsert_manifest_entry(_entry(random_weights, "b"), m)
    e = _entry(random_weights, "a")
    e["metrics"] = {"psnr": 1.0}
    upsert_manifest_entry(e, m)
    models = load_manifest(m)["models"]
    assert [x["name"] for x in models] == ["a", "b"]
    assert models[0]["metrics"] == {"psnr": 1.0}
    assert json.loads(m.read_text())["format"] == 1


def test_shipped_manifest_is_well_formed():
    manifest = load_manifest()
    for e in manifest["models"]:
        for key in ("name", "architecture", "file", "sha256", "size", "bands", "normalisation",
                    "training_data", "metrics"):
            assert key in e, (e.get("name"), key)
        assert len(e["sha256"]) == 64


def test_save_weights_reports_hash_and_size(tmp_path):
    info = save_weights(build_model("pantiny-small"), tmp_path / "s.safetensors", architecture="pantiny-small")
    assert info["size"] == (tmp_path / "s.safetensors").stat().st_size
    assert info["sha256"] == sha256_file(tmp_path / "s.safetensors")
    assert load_model(str(tmp_path / "s.safetensors")).__class__.__name__ == "PanTinySmall"


def test_list_models_and_the_default_always_resolves():
    import pantiny
    from pantiny.weights import resolve_model_name

    manifest = load_manifest()
    names = pantiny.list_models(pretrained=True)
    assert names == sorted(e["name"] for e in manifest["models"]) and manifest["default"] in names
    assert pantiny.list_models() == ["pantiny-big", "pantiny-small"]
    for n in names:  # shipped names are arch.tag
        arch, tag = n.split(".", 1)
        assert arch in pantiny.list_models() and tag
    assert resolve_model_name("pantiny-big") == manifest["default"]  # the architecture's default weights
    with pytest.warns(FutureWarning, match="deprecated"):
        assert resolve_model_name("pantiny-big-preview") == "pantiny-big.preview"


def test_manifest_entries_are_validated_when_loaded(tmp_path, random_weights):
    good = _entry(random_weights, "pantiny-big.x")
    for bad, msg in ((dict(good, sha256="abc"), "sha256"), (dict(good, size="1"), "'size' must be a int"),
                     (dict(good, architecture="resnet"), "unknown architecture")):
        m = tmp_path / "m.json"
        m.write_text(json.dumps({"format": 1, "default": "pantiny-big.x", "models": [bad]}))
        with pytest.raises(WeightsError, match=msg):
            load_manifest(m)
    m.write_text(json.dumps({"format": 1, "default": "nope", "models": [good]}))
    with pytest.raises(WeightsError, match="default 'nope' names no entry"):
        load_manifest(m)


def test_every_architecture_declares_its_receptive_radius():
    from pantiny.models import MODELS

    for name in MODELS:
        assert isinstance(build_model(name).receptive_radius, int)
