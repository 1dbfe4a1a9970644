"""What a new user meets first: checkpoint errors that name the file and what differs, MNIST
without data, the zero-augmentation lift, progress bars written to a file, the CLI validators."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
from torch import nn

from contdepth.cli import nonnegative_int, out_dir, positive_float, positive_int
from contdepth.data.mnist import load_mnist
from contdepth.errors import CheckpointError
from contdepth.lift import ZeroAugment
from contdepth.train import fit

X, Y = torch.randn(40, 3), torch.randint(0, 2, (40,))


def _fit(model: nn.Module, path, epochs: int = 1, **kwargs) -> dict:
    return fit(model, nn.functional.cross_entropy, (X, Y), optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
               epochs=epochs, batch_size=10, checkpoint=path, progress=False, **kwargs)


def test_truncated_checkpoint_names_the_file(tmp_path):
    path = tmp_path / "run.pt"
    _fit(nn.Linear(3, 2), path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=f"checkpoint {path} cannot be read.*truncated"):
        _fit(nn.Linear(3, 2), path, epochs=2)


def test_checkpoint_of_another_configuration_names_the_shapes(tmp_path):
    path = tmp_path / "run.pt"
    _fit(nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)), path)
    with pytest.raises(CheckpointError, match=r"0.weight: shape \(4, 3\) in the file, \(5, 3\) in the model"):
        _fit(nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 2)), path, epochs=2)
    with pytest.raises(CheckpointError, match=f"checkpoint {path} holds a Sequential model, not a Linear"):
        _fit(nn.Linear(3, 2), path, epochs=2)
    with pytest.raises(CheckpointError, match="already run 1 epochs"):
        _fit(nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)), path, epochs=0)
    with pytest.raises(CheckpointError, match="seed=0, not seed=3"):
        _fit(nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)), path, epochs=2, seed=3)
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a contdepth.train.fit checkpoint"):
        _fit(nn.Linear(3, 2), tmp_path / "other.pt")


def test_progress_bars_stay_silent_when_stderr_is_not_a_terminal(capsys):
    fit(nn.Linear(3, 2), nn.functional.cross_entropy, (X, Y), optimizer=torch.optim.SGD(nn.Linear(3, 2).parameters()),
        epochs=2, batch_size=10, progress=True)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""  # no escape fragments, no repeated last line


def test_mnist_without_data_names_the_option_and_variable(monkeypatch, tmp_path):
    monkeypatch.delenv("CONTDEPTH_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="--data DIR.*CONTDEPTH_DATA.*nothing is downloaded"):
        load_mnist()
    with pytest.raises(FileNotFoundError, match="does not exist.*--data or CONTDEPTH_DATA"):
        load_mnist(tmp_path / "nowhere")


def test_zero_augment_pads_features_and_channels():
    points = torch.randn(5, 2)
    lifted = ZeroAugment(3)(points)
    assert lifted.shape == (5, 3) and torch.equal(lifted[:, :2], points) and not lifted[:, 2].any()
    images = torch.randn(2, 1, 4, 4)
    lifted = ZeroAugment(10)(images)
    assert lifted.shape == (2, 10, 4, 4) and torch.equal(lifted[:, :1], images) and not lifted[:, 1:].any()
    with pytest.raises(ValueError, match=r"c <= 2, got shape \(5, 3\)"):
        ZeroAugment(2)(torch.randn(5, 3))
    with pytest.raises(ValueError, match="size"):
        ZeroAugment(0)


@pytest.mark.parametrize("parse, text", [(positive_int, "0"), (positive_int, "1.5"), (nonnegative_int, "-1"),
                                         (positive_float, "-1"), (positive_float, "nan"), (positive_float, "inf")])
def test_cli_validators_reject(parse, text):
    with pytest.raises(argparse.ArgumentTypeError, match=f"got '{text}'"):
        parse(text)


def test_cli_validators_accept_and_out_dir(tmp_path):
    assert positive_int("3") == 3 and nonnegative_int("0") == 0 and positive_float("1e-3") == 1e-3
    assert out_dir(str(tmp_path / "new")) == tmp_path / "new"
    (tmp_path / "f").write_text("")
    with pytest.raises(argparse.ArgumentTypeError, match="not a directory"):
        out_dir(str(tmp_path / "f"))
    with pytest.raises(argparse.ArgumentTypeError, match="not a directory"):
        out_dir(str(tmp_path / "f" / "sub"))


def test_ci_runs_exactly_the_readme_test_command():
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    section = readme[readme.index("## Run the tests"):]
    start = section.index("```bash\n") + len("```bash\n")
    command = section[start:section.index("\n```", start)]
    ci = (root / ".ci" / "run").read_text().splitlines()
    assert command == 'pip install -e ".[test]" && python -m pytest -q -n auto' and command in ci
    pin = next(i for i, line in enumerate(ci) if "torch==2.14.1" in line and "torchvision==0.29.1" in line)
    assert pin < ci.index(command)
