import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny models run faster on one thread (more only add synchronisation), and much faster when other
    processes (xdist workers, notebook kernels) share the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
