"""Per-head interventions (models.heads, hijack.mechanism) against what they must equal, on tiny random
gpt2 (Conv1D projections, absolute positions), llama (grouped-query attention) and gemma3 (a dict of
masks per layer type)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from assocmem.hijack import mechanism as M
from assocmem.hijack.counterfact import load_counterfact
from assocmem.models.heads import HeadEdit, edited_heads, head_layout, scale_edits
from assocmem.models.packed_forward import forward_rows
from assocmem.models.packing import Rows

ARCHS = ("gpt2", "llama", "gemma3")


@pytest.fixture(scope="module")
def records(counterfact_small):
    return load_counterfact(counterfact_small, skip_bad=True).records[:6]


def _analyse(lm, records, planner):
    data = M.build_items(lm.tokenizer, records, "not-think", (1, 3))
    config = M.MechanismConfig.of(model=lm.name, min_shift=0.0, probe_tokens=40, schemes=("not-think",))
    return data, M.analyse(lm, data, config, planner=planner)


def _plan(kind):
    return lambda items, which, L: [kind(items[i], i, L) for i in which]


def _margins(result, analysis="knockout"):
    iv = result.interventions
    return iv[iv["analysis"] == analysis].set_index(["case_id", "n"])["margin"].sort_index()


def _plain(result):
    return result.records[result.records["n"] > 0].set_index(["case_id", "n"])["margin"].sort_index()


def _head_knockout(heads_of):
    """Planner: the read position blind to the distractors in the top block, in heads_of(n_heads) heads."""
    def kind(it, i, L):
        read = it.length - 1
        return M.Intervention(i, read, (L - 1,), "knockout", "read", "head", "x", (read,),
                              tuple(it.distractor().tolist()), heads_of)
    return _plan(kind)


@pytest.mark.parametrize("arch", ARCHS)
def test_knockout_of_no_head_equals_the_plain_forward_and_of_every_head_the_blocks(tiny_lms, records, arch):
    lm = tiny_lms[arch]
    H = head_layout(lm.model).n_heads
    _, none = _analyse(lm, records, _head_knockout(()))
    got, plain = _margins(none), _plain(none)
    assert len(got) == len(plain) > 0
    np.testing.assert_allclose(got.to_numpy(), plain.to_numpy(), atol=1e-5, rtol=0)
    _, every = _analyse(lm, records, _head_knockout(tuple(range(H))))
    _, block = _analyse(lm, records, _head_knockout(None))
    np.testing.assert_allclose(_margins(every).to_numpy(), _margins(block).to_numpy(), atol=1e-5, rtol=0)
    assert np.abs(_margins(block).to_numpy() - plain.to_numpy()).max() > 1e-4        # the test can fail


@pytest.mark.parametrize("arch", ARCHS)
def test_one_heads_knockout_is_the_block_knockouts_output_of_that_head_alone(tiny_lms, records, arch):
    """Head h's output z_h depends only on its own attention, so blinding head 1 alone equals the plain
    forward of the whole prompt with z_1 at the read taken from the forward where the whole top block
    is blind to the distractors (the other heads' z as in the plain forward)."""
    from assocmem.models.heads import captured_z

    lm = tiny_lms[arch]
    layout = head_layout(lm.model)
    data, result = _analyse(lm, records, _head_knockout((1,)))
    got = _margins(result)
    L = len(M.find_parts(lm.model).blocks)
    differs = 0
    for it in [it for it in data.items if it.n > 0][:4]:
        seq = tuple(data.requests[it.request])
        T = len(seq)
        rows = Rows(np.array([seq]), np.arange(T)[None].copy(), np.zeros((1, T), dtype=np.int64),
                    np.zeros((1, T), dtype=np.int64), np.arange(T)[None].copy(), {0: (0, 0, T, T, T)})
        k = torch.from_numpy(it.distractor())
        cells = {L - 1: (torch.zeros(len(k), dtype=torch.long), torch.full((len(k),), T - 1), k)}
        z: dict = {}
        at = (torch.tensor([0]), torch.tensor([T - 1]))
        with captured_z(layout, [L - 1], *at, z):
            forward_rows(lm, rows, np.array([0]), np.array([T - 1]), attention_edit=M._knockout_edit(cells))
        with edited_heads(layout, [HeadEdit(L - 1, 1, *at, values=z[L - 1][:, 1])]):
            h = forward_rows(lm, rows, np.array([0]), np.array([T - 1])).hidden
        want = M.target_margins(lm, h, [it.true_id], [it.false_id])[0]
        assert got.loc[(it.case_id, it.n)] == pytest.approx(want, abs=1e-5)
        differs += abs(want - _plain(result).loc[(it.case_id, it.n)]) > 1e-5
    assert differs


@pytest.mark.parametrize("arch", ("llama", "gemma3"))
def test_patching_every_heads_output_in_every_block_gives_the_clean_margin(tiny_lms, records, arch):
    """z of every head is the attention output before its (linear) projection: patching all of them at the
    read in every block is patching every attention output, which gives the clean margin (rotary positions)."""
    lm = tiny_lms[arch]
    H = head_layout(lm.model).n_heads
    planner = _plan(lambda it, i, L: M.Intervention(i, it.length - 1, tuple(range(L)), "patch", "head", "head", "all",
                                                    heads=tuple(range(H))))
    _, result = _analyse(lm, records, planner)
    iv = result.interventions
    np.testing.assert_allclose(iv["margin"], iv["margin_clean"], atol=1e-5, rtol=0)
    assert np.abs(iv["margin_hijacked"] - iv["margin_clean"]).max() > 1e-3
    one = _plan(lambda it, i, L: M.Intervention(i, it.length - 1, tuple(range(L)), "patch", "head", "head", "0",
                                                heads=(0,)))
    _, part = _analyse(lm, records, one)
    assert np.abs(part.interventions["margin"] - part.interventions["margin_clean"]).max() > 1e-4


def _whole_forward(lm, ids):
    T = len(ids)
    rows = Rows(np.array([ids]), np.arange(T)[None].copy(), np.zeros((1, T), dtype=np.int64),
                np.zeros((1, T), dtype=np.int64), np.arange(T)[None].copy(), {0: (0, 0, T, T, T)})
    return forward_rows(lm, rows, np.zeros(T, dtype=np.int64), np.arange(T)).hidden


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("scale", (1.0, 0.0, 0.5))
def test_scaling_a_head_is_scaling_its_output_projection_columns(tiny_lms, records, arch, scale):
    """Scale 1 changes nothing; scale s (0: the head knocked out) equals the unedited model with W_O's
    columns of that head multiplied by s, at every position."""
    lm = tiny_lms[arch]
    layout = head_layout(lm.model)
    ids = list(M.build_items(lm.tokenizer, records[:1], "not-think", (2,)).requests[1])
    plain = _whole_forward(lm, ids)
    with edited_heads(layout, scale_edits({(0, 1): scale})):
        edited = _whole_forward(lm, ids)
    proj = layout.projections[0]
    cols = layout.columns(1)
    saved = proj.weight.detach().clone()
    with torch.no_grad():                                  # Linear: weight (out, in); GPT-2's Conv1D: (in, out)
        if isinstance(proj, torch.nn.Linear):
            proj.weight[:, cols] *= scale
        else:
            proj.weight[cols, :] *= scale
    try:
        want = _whole_forward(lm, ids)
    finally:
        with torch.no_grad():
            proj.weight.copy_(saved)
    torch.testing.assert_close(edited, want, atol=1e-5, rtol=0)
    if scale == 1.0:
        torch.testing.assert_close(edited, plain, atol=0, rtol=0)
    else:
        assert (edited - plain).abs().max() > 1e-4


def test_head_edits_at_given_positions_touch_only_those(tiny_lms, records):
    lm = tiny_lms["llama"]
    layout = head_layout(lm.model)
    ids = list(M.build_items(lm.tokenizer, records[:1], "not-think", (1,)).requests[1])
    plain = _whole_forward(lm, ids)
    T = len(ids)
    at = HeadEdit(1, 2, torch.tensor([0]), torch.tensor([T - 1]), values=torch.zeros(1, layout.head_dim))
    with edited_heads(layout, [at]):
        edited = _whole_forward(lm, ids)
    torch.testing.assert_close(edited[:-1], plain[:-1], atol=0, rtol=0)     # earlier positions as they were
    assert (edited[-1] - plain[-1]).abs().max() > 1e-4
    with pytest.raises(ValueError, match="heads per block"):
        with edited_heads(layout, scale_edits({(0, layout.n_heads): 0.0})):
            pass


def test_head_layout_of_each_architecture(tiny_lms):
    expected = {"gpt2": (2, 16), "llama": (4, 8), "gemma3": (2, 16)}
    for arch, (heads, dim) in expected.items():
        layout = head_layout(tiny_lms[arch].model)
        assert (layout.n_heads, layout.head_dim, len(layout.projections)) == (heads, dim, 2)
