"""The content manifest of a local model directory (manifest.py), issue 21, finding 1."""

import os

from playpen_attribution.core import manifest
from playpen_attribution.core.manifest import write_manifest


def test_the_manifest_changes_with_the_content_only(tmp_path, monkeypatch):
    model = tmp_path / "model"
    model.mkdir()
    (model / "chat_template.jinja").write_text("<start_of_turn>")
    (model / "model.safetensors").write_bytes(b"\0" * 1000)
    (model / ".cache").mkdir()
    (model / ".cache" / "download.lock").write_text("hub bookkeeping")
    out = tmp_path / "results/models/model.manifest.json"
    assert write_manifest(model, out)
    assert set(manifest._read_json(out)["files"]) == {"chat_template.jinja", "model.safetensors"}
    mtime = out.stat().st_mtime_ns

    hashed = []
    real_sha256 = manifest._sha256
    monkeypatch.setattr(manifest, "_sha256", lambda path: hashed.append(path.name) or real_sha256(path))
    assert not write_manifest(model, out) and hashed == []  # nothing changed: nothing hashed
    weights = (model / "model.safetensors").stat()
    os.utime(model / "model.safetensors", ns=(weights.st_atime_ns, weights.st_mtime_ns + 10**9))
    # a touch: hashed once, the manifest stays
    assert not write_manifest(model, out) and hashed == ["model.safetensors"]
    assert not write_manifest(model, out) and hashed == ["model.safetensors"]
    assert out.stat().st_mtime_ns == mtime
    (model / "chat_template.jinja").write_text("<start_of_turn> ")  # an edit
    assert write_manifest(model, out)
    (model / "extra.json").write_text("{}")  # a new file
    assert write_manifest(model, out)
