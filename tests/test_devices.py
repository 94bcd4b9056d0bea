"""`--device` means the same in every command (common.devices)."""
import pytest
import torch

from common.devices import gan_device, resolve_device
from common.errors import UserError


def test_auto_and_cpu_everywhere():
    auto = "cuda:0" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == resolve_device(None) == resolve_device(" AUTO ") == auto
    assert gan_device("auto") == torch.device(auto)
    assert resolve_device("cpu") == "cpu" and gan_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("bad", ["tpu", "cpu:1", "npu", "mps:0"])
def test_a_bad_device_is_the_same_one_line_in_curate_and_gan(bad):
    with pytest.raises(UserError) as a:
        resolve_device(bad)
    with pytest.raises(UserError) as b:
        gan_device(bad)
    assert "expected auto, cpu, cuda, cuda:N, N or mps" in str(a.value)
    assert str(a.value) == str(b.value)


def test_a_device_the_command_cannot_use_says_so():
    with pytest.raises(UserError, match="this command runs on cpu or cuda, not mps"):
        gan_device("mps")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda():
    for d in ("cuda", "cuda:1", "0"):
        with pytest.raises(UserError, match="CUDA is not available here"):
            resolve_device(d)
