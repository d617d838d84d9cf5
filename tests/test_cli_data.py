"""`infoenh data synth|check|download` through infoenh.cli.main, and `python -m infoenh`."""
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from infoenh.cli import COMMAND_MODULES, build_parser, main
from infoenh.data.mosi_labels import MOSI_ACC7_BINS

SMALL = ["--sizes", "8", "4", "6", "--text-dim", "16"]


def test_synth_then_check(tmp_path, capsys):
    out = tmp_path / "testbed.pkl"
    assert main(["data", "synth", "--out", str(out), "--seed", "3", "--conflict-frac", "0.25",
                 "--noise", "text=0.2", "audio=2", *SMALL]) == 0
    said = capsys.readouterr().out
    assert "SYNTHETIC" in said and "8/4/6" in said
    marker = pickle.loads(out.read_bytes())["synthetic"]
    assert marker["seed"] == 3 and marker["knobs"]["conflict_frac"] == 0.25
    assert marker["knobs"]["noise"] == {"text": 0.2, "audio": 2.0, "vision": 1.5}

    assert main(["data", "check", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("SYNTHETIC testbed") and "not CMU-MOSI" in text
    assert "mmsa layout, unaligned" in text and "text 16, audio 5, vision 20" in text
    assert "checksum  unknown file" in text and "NaN/inf" in text
    assert "Acc-7 bins" in text and "(all figures above describe SYNTHETIC data)" in text
    for split in ("train", "valid", "test"):
        assert f"\n{split}" in text


def test_check_json_and_aligned(tmp_path, capsys):
    out = tmp_path / "a.pkl"
    assert main(["data", "synth", "--out", str(out), "--aligned", "--audio-neg-inf-frac", "0", *SMALL]) == 0
    capsys.readouterr()
    assert main(["data", "check", str(out), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["synthetic"] and s["aligned"] and s["nonfinite_total"] == 0
    assert s["splits"]["valid"]["n"] == 4 and s["splits"]["train"]["shapes"]["audio"] == [50, 5]
    lab = s["splits"]["test"]["labels"]
    assert sum(lab["acc7_bins"]) == 6 and lab["pos"] + lab["neg"] + lab["zero"] == 6
    assert s["mask_rules"]["audio"] == "text mask (aligned to words)"


def test_check_full_size_label_table(tmp_path, capsys):
    out = tmp_path / "full.pkl"
    assert main(["data", "synth", "--out", str(out), "--text-dim", "2", "--audio-dim", "2", "--vision-dim", "2",
                 "--aligned"]) == 0
    capsys.readouterr()
    assert main(["data", "check", str(out), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    for split, bins in MOSI_ACC7_BINS.items():
        assert tuple(s["splits"][split]["labels"]["acc7_bins"]) == bins


def test_check_with_sha256_and_inf_policy(tmp_path, capsys):
    out = tmp_path / "t.pkl"
    main(["data", "synth", "--out", str(out), "--audio-neg-inf-frac", "0.01", *SMALL])
    capsys.readouterr()
    assert main(["data", "check", str(out), "--sha256", "0" * 64]) == 1
    assert "SHA-256" in capsys.readouterr().err
    assert main(["data", "check", str(out), "--inf-policy", "error"]) == 1
    err = capsys.readouterr().err
    assert "infoenh data: error:" in err and "neginf" in err and "train/audio" in err


def test_errors_are_one_clear_line(tmp_path, capsys):
    assert main(["data", "check", str(tmp_path / "MOSI" / "Processed" / "unaligned_50.pkl")]) == 1
    err = capsys.readouterr().err
    assert "github.com/thuiar/MMSA" in err and "Traceback" not in err
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(b"cos\nsystem\n(S'echo hi'\ntR.")  # protocol-0 pickle calling os.system
    assert main(["data", "check", str(evil)]) == 1
    assert "refused to load global 'os.system'" in capsys.readouterr().err
    out = tmp_path / "t.pkl"
    out.write_bytes(b"x")
    assert main(["data", "synth", "--out", str(out), *SMALL]) == 1
    assert "--force" in capsys.readouterr().err
    assert main(["data", "synth", "--out", str(out), "--force", *SMALL]) == 0
    with pytest.raises(SystemExit):
        main(["data", "synth", "--out", str(out), "--noise", "text"])
    with pytest.raises(SystemExit):
        main(["data"])  # a sub-command is required


def test_traceback_flag(tmp_path):
    with pytest.raises(FileNotFoundError):
        main(["--traceback", "data", "check", str(tmp_path / "missing.pkl")])


def test_parser_registers_modules_one_line_each():
    assert COMMAND_MODULES[0] == "infoenh.data.cli"
    parser = build_parser()
    args = parser.parse_args(["data", "check", "x.pkl"])
    assert args.command == "data" and args.data_command == "check" and callable(args.func)


def test_python_dash_m(tmp_path):
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = tmp_path / "m.pkl"
    r = subprocess.run([sys.executable, "-m", "infoenh", "data", "synth", "--out", str(out), *SMALL],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert out.exists() and "SYNTHETIC" in r.stdout
    r = subprocess.run([sys.executable, "-m", "infoenh", "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0 and "data" in r.stdout


def test_download_command(tmp_path, capsys, monkeypatch):
    import hashlib
    import types

    payload = b"synthetic bytes" * 100

    def fake_download(url=None, output=None, quiet=False, id=None, resume=False, fuzzy=False):
        Path(output).write_bytes(payload)
        return output

    monkeypatch.setitem(sys.modules, "gdown", types.SimpleNamespace(download=fake_download))
    dest = tmp_path / "MOSI" / "Processed" / "x.pkl"
    assert main(["data", "download", "1a2B3c4D5e6F7g8H9i0J", str(dest), "--sha256",
                 hashlib.sha256(payload).hexdigest(), "--quiet"]) == 0
    assert dest.read_bytes() == payload
    assert main(["data", "download", "ftp://host/file", str(tmp_path / "y")]) == 1
    assert "unsupported URL scheme" in capsys.readouterr().err


def test_check_text_output_flags_labels_out_of_range(tmp_path, capsys):
    from infoenh.data.synthetic import make_synthetic

    data = make_synthetic(sizes=(8, 4, 6), text_dim=4, audio_neg_inf_frac=0.0, seed=1)
    data["train"]["regression_labels"][:3] = [-5.0, 4.5, 3.25]
    path = tmp_path / "out_of_range.pkl"
    path.write_bytes(pickle.dumps(data, protocol=4))
    assert main(["data", "check", str(path)]) == 0
    text = capsys.readouterr().out
    assert "LABELS    train: 3 of 8 labels OUTSIDE [-3, 3] (min -5.000, max 4.500); the metrics clip them" in text
    assert "valid:" not in text and "test:" not in text            # only the split that has them is flagged
    assert main(["data", "check", str(path), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["splits"]["train"]["labels"]["out_of_range"] == 3 and s["splits"]["test"]["labels"]["out_of_range"] == 0

    clean = tmp_path / "clean.pkl"
    assert main(["data", "synth", "--out", str(clean), *SMALL]) == 0
    capsys.readouterr()
    assert main(["data", "check", str(clean)]) == 0
    text = capsys.readouterr().out
    assert "labels    all within [-3, 3]" in text and "OUTSIDE" not in text


def test_synth_oversized_scale_is_one_clear_line(tmp_path, capsys):
    out = tmp_path / "huge.pkl"
    assert main(["data", "synth", "--out", str(out), "--scale", "1e9"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("infoenh data: error: this synthetic testbed would hold about ")
    assert "TiB of arrays" in err and "over the 16.0 GiB bound" in err and err.count("\n") == 1
    assert not out.exists() and not list(tmp_path.iterdir())
    assert main(["data", "synth", "--out", str(out), "--signal-strength", "nan", *SMALL]) == 1
    assert "signal_strength must be a finite number >= 0, got nan" in capsys.readouterr().err


def test_check_refuses_bombs_and_empty_sequences_in_one_line(tmp_path, capsys):
    bomb = tmp_path / "bomb.pkl"
    # bytearray(100_000_000) in 41 bytes: a buffer allocated from a declared size
    bomb.write_bytes(b"\x80\x04\x95\x1e\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x8c\tbytearray\x93"
                     b"J\x00\xe1\xf5\x05\x85R.")
    assert main(["data", "check", str(bomb)]) == 1
    err = capsys.readouterr().err
    assert "refused bytearray(...)" in err and "declared size" in err and err.count("\n") == 1

    from infoenh.data.synthetic import make_synthetic

    data = make_synthetic(sizes=(4, 2, 2), text_dim=4, seed=1)
    data["valid"]["vision"] = data["valid"]["vision"][:, :0]
    empty = tmp_path / "empty_seq.pkl"
    empty.write_bytes(pickle.dumps(data, protocol=4))
    assert main(["data", "check", str(empty)]) == 1
    err = capsys.readouterr().err
    assert "split 'valid' 'vision' has sequence length 0" in err and "Traceback" not in err
