"""Data-parallel training (genrecall.dist): 2 real gloo processes vs 1 process on the same global batches.

One module fixture spawns two processes on a free 127.0.0.1 port (the process start-up dominates the
cost, so both trainers run in one spawn); each test compares with the same training run in this process:
same losses and weights within float-summation noise, rank 0 alone writing files.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as tdist
import torch.multiprocessing as mp
from safetensors.torch import load_file

from genrecall import dist
from genrecall.gen.examples import encode_user_query, item_examples, query_examples, sid_lookup
from genrecall.gen.model import GeneratorConfig, build_model
from genrecall.gen.sft import SFTConfig, train_progressive
from genrecall.rl.grpo import GRPOConfig, RLDataset, train_grpo
from genrecall.rl.reward import requests_sids
from genrecall.sid.tokenizer import QueryPairs, SidTokenizer, SidTokenizerConfig
from genrecall.sid.trie import SidTrie
from tests.test_gen_examples import tiny_tables, tiny_tokenizer

torch.set_num_threads(1)
TINY = GeneratorConfig(
    hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=64, max_positions=96
)
# global batch 15 splits 8 + 7 across two ranks, so the loss weighting of unequal slices is exercised
SFT = {
    "i2sid": SFTConfig(stage="i2sid", max_steps=4, batch_size=15, lr=3e-3, warmup_steps=2, seed=3),
    "q2sid": SFTConfig(stage="q2sid", max_steps=6, batch_size=15, lr=3e-3, warmup_steps=2, checkpoint_every=3, seed=3),
}
SID = SidTokenizerConfig(
    method="cq_sid",
    codebook_sizes=("auto", 64, 64),
    hidden_dims=(32,),
    latent_dim=8,
    epochs=3,
    batch_size=32,
    dead_code_steps=2,
    kmeans_iters=5,
    seed=5,
)

# GRPO with deterministic rollouts (distinct beams, no expert draws) so 1 and 2 processes see the same
# groups; 7 prompts a step split 4 + 3, so unequal token shares are weighted
RL = GRPOConfig(
    steps=3,
    prompts_per_step=7,
    group_size=4,
    experts=0,
    group_mode="beams",
    lr=3e-3,
    warmup_steps=1,
    track_kl=False,
    seed=1,
)


def _rl_data():
    t = tiny_tables(n_requests=120)
    tok = tiny_tokenizer(t)
    rows = t.requests[t.requests["clicked"].map(len) > 0].reset_index(drop=True)
    data = RLDataset(
        [encode_user_query(tok, q, None) for q in rows["query"]],
        requests_sids(rows, sid_lookup(t.sids)),
        rows["request_id"].to_numpy(np.int64),
    )
    return tok, SidTrie.from_sids(np.array(t.sids["codes"].tolist())), data


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sft_data():
    t = tiny_tables()
    tok = tiny_tokenizer(t)
    return tok, {"i2sid": item_examples(t.items, t.sids, tok), "q2sid": query_examples(t.requests, t.sids, tok)}


def _sid_data() -> dict:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((150, 16)).astype(np.float32)  # 150 = 4 x 32 + 22: a ragged last batch
    cats = rng.integers(0, 5, 150).astype(np.float64)
    cats[::7] = np.nan  # some items with no category fall back to the nearest level-1 code
    queries = (x[:60] + 0.1 * rng.standard_normal((60, 16))).astype(np.float32)
    pairs = QueryPairs(np.arange(60, dtype=np.int64), np.arange(60, dtype=np.int64))
    return {"embeddings": x, "categories": cats, "queries": queries, "pairs": pairs}


def _fit_sid() -> tuple[SidTokenizer, object]:
    d = _sid_data()
    tok = SidTokenizer(SID)
    rep = tok.fit(d["embeddings"], d["categories"], queries=d["queries"], pairs=d["pairs"])
    return tok, rep


def _worker(rank: int, world: int, port: int, root: str) -> None:
    torch.set_num_threads(1)
    tdist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        ctx = dist.context()
        assert (ctx.rank, ctx.world_size) == (rank, world)
        out = Path(root) / f"rank{rank}"  # rank 1 gets its own dir: it must stay empty
        tok, datasets = _sft_data()
        # rank 1 starts from other weights: DDP must broadcast rank 0's before the first step
        model = build_model(
            GeneratorConfig(**{**TINY.__dict__, "seed": TINY.seed if rank == 0 else 99}), len(tok), tokenizer=tok
        )
        res = train_progressive(model, tok, datasets, SFT, out / "sft", show_progress=False)
        sid, rep = _fit_sid()
        rl_tok, rl_trie, rl_data = _rl_data()
        rl_model = build_model(
            GeneratorConfig(**{**TINY.__dict__, "seed": TINY.seed if rank == 0 else 99}), len(rl_tok), tokenizer=rl_tok
        )
        rl = train_grpo(rl_model, rl_tok, rl_trie, rl_data, RL, out / "rl", show_progress=False)
        if ctx.is_main:
            (out / "rl_logs.json").write_text(json.dumps(rl.logs))
            (out / "losses.json").write_text(json.dumps({s: r.losses for s, r in res.items()}))
            sid.save(out / "sid")
            (out / "report.json").write_text(json.dumps({"loss": rep.loss, "restarts": rep.restarts}))
    finally:
        tdist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run the 2-process job once: SFT (2 stages), an RQ-VAE fit, then GRPO; outputs under rank<r>/."""
    root = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(2, _free_port(), str(root)), nprocs=2, join=True)
    return root


def test_context_without_torchrun_is_a_single_process() -> None:
    ctx = dist.context()
    assert not tdist.is_initialized() and (ctx.rank, ctx.world_size, ctx.is_main, ctx.enabled) == (0, 1, True, False)
    idx = np.arange(7)
    assert np.array_equal(dist.shard(idx, ctx), idx) and dist.weight(7, 7, ctx) == 1.0
    two = [dist.DistContext(rank=r, world_size=2) for r in range(2)]
    parts = [dist.shard(idx, c) for c in two]
    assert np.array_equal(np.concatenate(parts), idx) and [len(p) for p in parts] == [4, 3]
    assert sum(dist.weight(len(p), 7, c) for p, c in zip(parts, two)) == pytest.approx(2.0)  # DDP divides by 2
    with pytest.raises(ValueError, match="device"):
        dist.DistConfig(device="tpu")


@pytest.mark.slow  # spawns two torch processes (~15 s before the first test)
def test_two_process_sft_matches_one_process(ddp_root: Path, tmp_path: Path) -> None:
    tok, datasets = _sft_data()
    model = build_model(TINY, len(tok), tokenizer=tok)
    single = train_progressive(model, tok, datasets, SFT, tmp_path / "single", show_progress=False)

    ddp_losses = json.loads((ddp_root / "rank0" / "losses.json").read_text())
    for stage, res in single.items():
        np.testing.assert_allclose(ddp_losses[stage], res.losses, rtol=0, atol=2e-4, err_msg=stage)
        a = load_file(str(ddp_root / "rank0" / "sft" / stage / "final" / "model.safetensors"))
        b = load_file(str(res.final_dir / "model.safetensors"))
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], atol=2e-4, rtol=0, msg=k)
    assert (ddp_root / "rank0" / "sft" / "q2sid" / "checkpoints" / "step-0000003").is_dir()
    state = json.loads((ddp_root / "rank0" / "sft" / "q2sid" / "final" / "trainer_state.json").read_text())
    assert state["world_size"] == 2
    # rank 1 computed but wrote nothing (its stage dirs exist, empty); its warm start came from rank 0's files
    assert [p for p in (ddp_root / "rank1").rglob("*") if p.is_file()] == []


@pytest.mark.slow  # spawns two torch processes (~15 s before the first test)
def test_two_process_rqvae_fit_matches_one_process(ddp_root: Path) -> None:
    single, rep = _fit_sid()
    ddp = SidTokenizer.load(ddp_root / "rank0" / "sid")
    got = json.loads((ddp_root / "rank0" / "report.json").read_text())
    assert sum(rep.restarts) > 0 and got["restarts"] == rep.restarts  # restarts drew the same residuals
    np.testing.assert_allclose(got["loss"], rep.loss, rtol=0, atol=1e-4)
    a, b = ddp.model.state_dict(), single.model.state_dict()
    for k in b:
        torch.testing.assert_close(a[k].float(), b[k].float(), atol=1e-4, rtol=0, msg=k)
    d = _sid_data()
    assert np.array_equal(ddp.assign(d["embeddings"], d["categories"]), single.assign(d["embeddings"], d["categories"]))


@pytest.mark.slow  # spawns two torch processes (~15 s before the first test)
def test_two_process_grpo_matches_one_process(ddp_root: Path, tmp_path: Path) -> None:
    tok, trie, data = _rl_data()
    model = build_model(TINY, len(tok), tokenizer=tok)
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    single = train_grpo(model, tok, trie, data, RL, tmp_path / "rl", show_progress=False)
    logs = json.loads((ddp_root / "rank0" / "rl_logs.json").read_text())
    for key in ("reward_mean", "zero_variance_share", "loss"):  # step logs are global means over both ranks
        np.testing.assert_allclose(
            [g[key] for g in logs], [s[key] for s in single.logs], rtol=0, atol=1e-4, err_msg=key
        )
    assert any(s["loss"] != 0.0 for s in single.logs)  # some group had reward variance: a real update happened
    a = load_file(str(ddp_root / "rank0" / "rl" / "final" / "model.safetensors"))
    b = load_file(str(single.final_dir / "model.safetensors"))
    assert any(not torch.equal(b[k], start[k]) for k in b if k in start)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=2e-4, rtol=0, msg=k)
