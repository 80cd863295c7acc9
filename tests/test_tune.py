"""`bench tune`: Optuna + ASHA on Ray Tune writes a preset that a grid can then name."""

from __future__ import annotations

import pytest
import yaml

from bench.cli import main
from bench.config import load_grid

pytestmark = pytest.mark.slow


def test_tune_writes_a_preset_a_grid_can_name(ray_session, synth_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    grid = tmp_path / "g.yaml"
    grid.write_text(f"""\
name: tune-test
dataset: {{kind: synthetic, root: {synth_root}, n: 200, size: 64, image_size: 32}}
splits: {{folds: 2, val_fraction: 0.25, seed: 0}}
backbones: [test_resnet]
strategies: [bce]
train: {{epochs: 2, batch_size: 32, lr: 0.003}}
resources: {{cpu: 1}}
localisation: {{enabled: false}}
""")
    assert main(["tune", "--grid", str(grid), "--strategy", "focal", "--trials", "3",
                 "--out", str(tmp_path / "search")]) == 0
    out = capsys.readouterr().out
    assert "best val_macro_auc" in out
    preset = tmp_path / "presets" / "focal_tuned.yaml"
    doc = yaml.safe_load(preset.read_text())
    assert doc["loss"]["name"] == "focal" and 1.0 <= doc["loss"]["gamma"] <= 4.0
    assert doc["tuned"]["trials"] == 3 and (tmp_path / "search" / "search.csv").is_file()
    # The preset is now a strategy like any other.
    grid.write_text(grid.read_text().replace("strategies: [bce]", "strategies: [bce, focal_tuned]"))
    cfg = load_grid(grid)
    assert cfg.strategy_specs()[1]["loss"] == doc["loss"]
    assert main(["list", "strategies", "focal_tuned"]) == 0
    # A second search may not overwrite it.
    assert main(["tune", "--grid", str(grid), "--strategy", "focal", "--trials", "1"]) == 2
    assert "exists already" in capsys.readouterr().err


def test_tune_refuses_presets_without_a_space(synth_root, tmp_path, capsys):
    grid = tmp_path / "g.yaml"
    grid.write_text(f"dataset: {{kind: synthetic, root: {synth_root}, n: 200, size: 64}}\nbackbones: [test_resnet]\n")
    assert main(["tune", "--grid", str(grid), "--strategy", "bce", "--trials", "2"]) == 2
    assert "declares no tunable parameters" in capsys.readouterr().err
    assert main(["tune", "--grid", str(grid), "--strategy", "focl", "--trials", "2"]) == 2
    assert "did you mean 'focal'" in capsys.readouterr().err


def test_ray_client_connection_is_retried_when_the_head_fails_to_start_its_server(monkeypatch, caplog):
    """Ray's proxy sometimes fails to start the per-client server (ConnectionAbortedError): two retries,
    each announced; a third failure is raised."""
    import ray

    from bench import tuner

    calls = []

    def init(address, **kw):
        calls.append((address, kw["log_to_driver"]))
        if len(calls) < 3:
            raise ConnectionAbortedError("Initialization failure from server:\nTraceback ...")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(tuner, "_client_console", lambda debug: calls.append("console"))
    monkeypatch.setattr(tuner.time, "sleep", lambda s: None)
    monkeypatch.delenv("BENCH_DEBUG", raising=False)
    tuner.init_ray("ray://127.0.0.1:10001")
    assert calls == [("ray://127.0.0.1:10001", True)] * 3 + ["console"]
    retries = [r.getMessage() for r in caplog.records if "per-client server did not start" in r.getMessage()]
    assert len(retries) == 2 and "Initialization failure from server:" in retries[0] and "(2/3)" in retries[0]

    def always_fails(address, **kw):
        calls.append(address)
        raise ConnectionAbortedError("Initialization failure from server:")

    calls.clear()
    monkeypatch.setattr(ray, "init", always_fails)
    with pytest.raises(ConnectionAbortedError):
        tuner.init_ray("ray://127.0.0.1:10001")
    assert len(calls) == tuner.CLIENT_ATTEMPTS
