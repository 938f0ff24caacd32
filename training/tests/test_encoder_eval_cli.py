"""Bad command lines of the encoder evaluation fail with a message and exit status 2."""
import pytest

from av1part_train.encoder_eval import main


@pytest.mark.parametrize("args,needle", [
    (["--clips", "nosuchclip"], "unknown clip 'nosuchclip'"),
    (["--cq", "24,32,40"], "at least 4 cq levels"),
    (["--configs", "prune:7"], "bad configuration 'prune:7'"),
    (["--frames", "0"], "must be positive"),
    (["--clips", "", "--y4m", "/nonexistent/clip.y4m"], "/nonexistent/clip.y4m"),
])
def test_bad_arguments(args, needle, capsys, tmp_path):
    assert main(args + ["--out", str(tmp_path)]) == 2
    assert needle in capsys.readouterr().err
