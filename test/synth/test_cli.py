"""`fusionocc synth` command line."""

import pytest

from fusionocc_core.synth.cli import main


def test_cli_writes_a_dataset(tmp_path, capsys):
    out = tmp_path / "ds"
    code = main(
        [
            "--out",
            str(out),
            "--scenes",
            "1",
            "--keyframes",
            "1",
            "--image-size",
            "64x36",
            "--no-sweeps",
            "--seed",
            "2",
            "--no-progress",
        ]
    )
    assert code == 0
    assert "Wrote 1 scene(s)" in capsys.readouterr().out
    assert (out / "v1.0-mini" / "scene.json").exists()
    assert len(list((out / "samples" / "CAM_FRONT").glob("*.jpg"))) == 1


def test_cli_reports_a_non_empty_output(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["--out", str(tmp_path), "--keyframes", "1", "--image-size", "64x36", "--no-progress"]) == 2
    assert "not empty" in capsys.readouterr().out


def test_cli_rejects_a_bad_image_size(capsys):
    with pytest.raises(SystemExit):
        main(["--out", "x", "--image-size", "big"])
    assert "1600x900" in capsys.readouterr().err
