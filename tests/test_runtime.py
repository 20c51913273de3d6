"""Runtime policy: library functions change no process-wide state; `runtime_policy` sets and restores it."""

import pytest
import torch

from sam3d_eval import runtime
from sam3d_eval.metrics.chamfer import chamfer_distance
from sam3d_eval.metrics.point_mesh_distance import point_mesh_face_distance, point_mesh_surface_distance
from sam3d_eval.ops.knn import knn_points, select_backend
from sam3d_eval.runtime import runtime_policy, triton_enabled
from sam3d_eval.structures import Meshes, Pointclouds

pytestmark = pytest.mark.no_runtime_policy  # these tests set up (or rule out) the policy themselves


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _cube():
    v = torch.tensor([[x, y, z] for x in (0.0, 1.0) for y in (0.0, 1.0) for z in (0.0, 1.0)])
    f = torch.tensor([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                      [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])  # fmt: skip
    return v, f


def test_library_calls_never_set_threads(two_threads, monkeypatch):
    """Outside a policy no metric or op touches torch's thread count (it used to drop it to 1 inside)."""
    calls = []
    real = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (calls.append(n), real(n)))
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(1, 3000, 3, generator=g), torch.rand(1, 2500, 3, generator=g)
    chamfer_distance(x, y)
    knn_points(x, y, backend="kdtree")
    knn_points(x, y, backend="torch", K=2)
    v, f = _cube()
    pts = Pointclouds([torch.rand(2000, 3, generator=g)])
    point_mesh_face_distance(Meshes([v], [f]), pts)
    point_mesh_surface_distance(Meshes([v], [f]), pts)
    assert calls == []
    assert torch.get_num_threads() == 2


def test_policy_sets_and_restores_threads(two_threads):
    with runtime_policy("cpu") as pol:
        assert torch.get_num_threads() == 1
        assert pol.torch_threads == 1 and pol.kdtree_threads == 2
        with runtime.kdtree_threads(runtime.KDTREE_THREADED_MIN_QUERIES):
            assert torch.get_num_threads() == 2  # large KD-tree queries get back the cores the policy took
        assert torch.get_num_threads() == 1
        with runtime.kdtree_threads(runtime.KDTREE_THREADED_MIN_QUERIES - 1):
            assert torch.get_num_threads() == 1  # small ones stay on one thread
        assert torch.get_num_threads() == 1
        chamfer_distance(torch.rand(1, 3000, 3), torch.rand(1, 3000, 3))
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with runtime_policy("cpu", torch_threads=None):
        assert torch.get_num_threads() == 2
    with runtime_policy("cpu", torch_threads=1):
        assert torch.get_num_threads() == 1 and runtime.active_policy().kdtree_threads is None
    with runtime_policy("cuda"):  # "auto" leaves the CPU threads alone for GPU work
        assert torch.get_num_threads() == 2
    assert runtime.active_policy() is None


def test_policy_restores_on_error(two_threads):
    with pytest.raises(RuntimeError):
        with runtime_policy("cpu"):
            raise RuntimeError("boom")
    assert torch.get_num_threads() == 2 and runtime.active_policy() is None


def test_kdtree_threads_is_noop_without_policy(two_threads, monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: calls.append(n))
    with runtime.kdtree_threads(10**6):
        pass
    assert calls == []


def test_bad_thread_setting():
    for bad in (0, -1, 1.5, "two", True):
        with pytest.raises(ValueError, match="torch_threads"):
            with runtime_policy("cpu", torch_threads=bad):
                pass


def test_triton_switch(monkeypatch):
    monkeypatch.setattr(runtime, "_triton_importable", lambda: True)
    assert triton_enabled()
    with runtime_policy("cpu", torch_threads=None, triton=False):
        assert not triton_enabled()
        with runtime_policy("cpu", torch_threads=None, triton=True):  # nests
            assert triton_enabled()
        assert not triton_enabled()
    assert triton_enabled()
    # the environment variable is gone: it no longer switches anything
    monkeypatch.setenv("SAM3D_EVAL_DISABLE_TRITON", "1")
    assert triton_enabled()


def test_select_backend_reads_the_policy(monkeypatch):
    """On CUDA tensors the auto dispatch picks Triton only when the policy allows it (checked with a fake
    CUDA tensor: select_backend reads only .is_cuda, dtype, shape)."""
    monkeypatch.setattr(runtime, "_triton_importable", lambda: True)

    class Fake:
        is_cuda = True
        dtype = torch.float32
        shape = (1, 100, 3)

    assert select_backend(Fake(), Fake(), 1) == "triton"
    with runtime_policy("cuda", triton=False):
        assert select_backend(Fake(), Fake(), 1) == "torch"
