"""Two CPU processes with gloo give the rows of one process (the torchrun path, without torchrun)."""

import os
import socket
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp

from assocmem.hijack.run import HijackConfig, run_hijack

FIXTURE = str(Path(__file__).resolve().parent.parent / "fixtures" / "counterfact_small.json")
CONFIG = dict(model="tiny-random-llama", schemes=("not-think", "reverse"), max_n=2, counterfact=FIXTURE,
              chunk_size=10, device="cpu", batch_tokens=64)


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    summary = run_hijack(HijackConfig.of(**CONFIG), out, progress=False, plot=False)
    assert summary["records"] == 24          # every rank gets rank 0's summary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.distributed
def test_two_gloo_ranks_write_what_one_process_writes(tmp_path):
    run_hijack(HijackConfig.of(**CONFIG), tmp_path / "one", progress=False, plot=False)
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path / "two")), nprocs=2, join=True)
    one = pd.read_parquet(tmp_path / "one" / "rows.parquet")
    two = pd.read_parquet(tmp_path / "two" / "rows.parquet")
    logps = ["logp_true", "logp_false"]
    pd.testing.assert_frame_equal(one.drop(columns=logps), two.drop(columns=logps))   # same decisions, same order
    assert ((one[logps] - two[logps]).abs() < 1e-4).all().all()
    assert len(list((tmp_path / "two" / "chunks").glob("*.parquet"))) == 3
