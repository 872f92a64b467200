"""Two CPU processes with gloo give the rows of one process (the torchrun path, without torchrun)."""

import os
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from assocmem.hijack.run import HijackConfig, run_hijack

FIXTURE = str(Path(__file__).resolve().parent.parent / "fixtures" / "counterfact_small.json")
CONFIG = dict(model="tiny-random-llama", schemes=("not-think", "reverse"), max_n=2, counterfact=FIXTURE,
              chunk_size=10, device="cpu", batch_tokens=64)


def _worker(rank: int, world: int, port: int, out: str) -> None:
    # As under torchrun: the launcher holds the rendezvous store and every rank joins it as a client.
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), TORCHELASTIC_USE_AGENT_STORE="True")
    torch.set_num_threads(1)
    summary = run_hijack(HijackConfig.of(**CONFIG), out, progress=False, plot=False).summary
    assert summary["records"] == 24          # every rank gets rank 0's summary


def _launcher_store(world: int) -> dist.TCPStore:
    """The rendezvous store, listening on a port the OS chose when it was bound (a port found free and
    bound later by another process could be taken in between)."""
    return dist.TCPStore("127.0.0.1", 0, world, is_master=True, wait_for_workers=False)


@pytest.mark.distributed
def test_two_gloo_ranks_write_what_one_process_writes(tmp_path):
    run_hijack(HijackConfig.of(**CONFIG), tmp_path / "one", progress=False, plot=False)
    store = _launcher_store(2)
    mp.spawn(_worker, args=(2, store.port, str(tmp_path / "two")), nprocs=2, join=True)
    one = pd.read_parquet(tmp_path / "one" / "rows.parquet")
    two = pd.read_parquet(tmp_path / "two" / "rows.parquet")
    logps = ["logp_true", "logp_false"]
    pd.testing.assert_frame_equal(one.drop(columns=logps), two.drop(columns=logps))   # same decisions, same order
    assert ((one[logps] - two[logps]).abs() < 1e-4).all().all()
    assert len(list((tmp_path / "two" / "chunks").glob("*.parquet"))) == 3
