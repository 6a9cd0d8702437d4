from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from genrecall.gen.beam import beam_search
from genrecall.gen.examples import item_examples, query_examples, user_contexts_from_log, user_query_examples
from genrecall.gen.model import GeneratorConfig, build_model, load_generator
from genrecall.gen.sft import SFTConfig, lr_at, train_progressive, train_sft
from genrecall.sid.trie import SidTrie
from tests.test_gen_examples import tiny_tables, tiny_tokenizer

torch.set_num_threads(1)
TINY = GeneratorConfig(
    hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=64, max_positions=96
)


@pytest.fixture(scope="module")
def data():
    t = tiny_tables()
    tok = tiny_tokenizer(t)
    ctx = user_contexts_from_log(t.requests, t.users, t.sids, items=t.items, categories=t.categories)
    datasets = {
        "i2sid": item_examples(t.items, t.sids, tok),
        "q2sid": query_examples(t.requests, t.sids, tok),
        "uq2sid": user_query_examples(t.requests, t.sids, tok, ctx),
    }
    return t, tok, datasets


def _params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


@pytest.mark.parametrize("stage", ["i2sid", "q2sid", "uq2sid"])
def test_stage_smoke_loss_goes_down_and_every_parameter_moves(data, stage: str, tmp_path) -> None:
    _, tok, datasets = data
    model = build_model(TINY, len(tok), tokenizer=tok)
    before = _params(model)
    cfg = SFTConfig(stage=stage, max_steps=40, batch_size=16, lr=3e-3, warmup_steps=5, weight_decay=0.0, log_every=10)
    res = train_sft(model, tok, datasets[stage], cfg, tmp_path, show_progress=False)
    n, spe = len(datasets[stage]), -(-len(datasets[stage]) // 16)
    seen = sum(min(16, n - (s % spe) * 16) for s in range(40))  # the last batch of an epoch is partial
    assert res.steps == 40 and len(res.losses) == 40 and res.examples_seen == seen
    assert np.mean(res.losses[-5:]) < 0.7 * np.mean(res.losses[:5])
    for name, p in model.named_parameters():  # weight decay is off: every change comes from the gradient
        assert not torch.equal(p.detach(), before[name]), f"{name} did not change"
    rows = list(csv.DictReader(res.loss_csv.open()))
    assert len(rows) == 40 and float(rows[-1]["loss"]) == pytest.approx(res.losses[-1], abs=1e-5)
    loaded = load_generator(res.final_dir)
    for (name, p), (_, q) in zip(model.named_parameters(), loaded.model.named_parameters()):
        assert torch.equal(p.detach(), q.detach()), name
    assert loaded.tokenizer.to_dict() == tok.to_dict()
    assert json.loads((res.final_dir / "trainer_state.json").read_text())["stage"] == stage


def test_resume_matches_uninterrupted_run(data, tmp_path) -> None:
    _, tok, datasets = data
    ds = datasets["q2sid"]
    cfg = SFTConfig(stage="q2sid", max_steps=14, batch_size=8, lr=5e-3, warmup_steps=3, checkpoint_every=4, seed=7)
    full = build_model(TINY, len(tok), tokenizer=tok)
    a = train_sft(full, tok, ds, cfg, tmp_path / "a", show_progress=False)

    first = build_model(TINY, len(tok), tokenizer=tok)
    part = train_sft(first, tok, ds, cfg, tmp_path / "b", stop_after=6, show_progress=False)  # crosses an epoch
    assert part.steps == 6 and not part.final_dir.exists()
    # a fresh process would build a differently initialised model: the checkpoint must override all of it
    other = build_model(GeneratorConfig(**{**TINY.__dict__, "seed": 99}), len(tok), tokenizer=tok)
    torch.manual_seed(12345)  # and the global RNG state must come from the checkpoint too
    b = train_sft(other, tok, ds, cfg, tmp_path / "b", resume=True, show_progress=False)
    assert b.steps == 14 and b.losses == a.losses
    for (name, p), (_, q) in zip(full.named_parameters(), other.named_parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0, msg=name)
    kept = sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir())
    assert kept == ["step-0000012", "step-0000014"]  # keep_checkpoints=2


def test_a_fresh_run_clears_an_earlier_runs_checkpoints(data, tmp_path) -> None:
    """Stale checkpoints of a longer earlier run would outrank (and prune) the new run's, and a resume
    after a crash would continue the earlier run: a fresh start begins with none."""
    _, tok, datasets = data
    ds = datasets["q2sid"]
    long = SFTConfig(stage="q2sid", max_steps=12, batch_size=8, checkpoint_every=4, seed=7)
    train_sft(build_model(TINY, len(tok), tokenizer=tok), tok, ds, long, tmp_path, show_progress=False)
    short = SFTConfig(stage="q2sid", max_steps=8, batch_size=8, checkpoint_every=2, seed=7)
    part = train_sft(build_model(TINY, len(tok), tokenizer=tok), tok, ds, short, tmp_path, stop_after=5)
    assert part.steps == 5
    kept = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert kept == ["step-0000004", "step-0000005"]  # this run's, not the earlier run's step 8 and 12
    done = train_sft(build_model(TINY, len(tok), tokenizer=tok), tok, ds, short, tmp_path, resume=True)
    assert done.steps == 8 and len(done.losses) == 8


def test_warm_start_loads_previous_stage(data, tmp_path) -> None:
    _, tok, datasets = data
    results = train_progressive(
        build_model(TINY, len(tok), tokenizer=tok),
        tok,
        {"i2sid": datasets["i2sid"], "q2sid": datasets["q2sid"]},
        {"i2sid": SFTConfig(stage="i2sid", max_steps=10, batch_size=8), "q2sid": SFTConfig(stage="q2sid", max_steps=0)},
        tmp_path,
        show_progress=False,
    )
    # zero q2sid steps: its final weights are exactly the i2sid weights it was warm-started from
    prev = load_generator(results["i2sid"].final_dir).model
    warm = load_generator(results["q2sid"].final_dir).model
    for (name, p), (_, q) in zip(prev.named_parameters(), warm.named_parameters()):
        assert torch.equal(p, q), name
    fresh = build_model(TINY, len(tok), tokenizer=tok)
    assert not torch.equal(fresh.lm_head.weight, warm.lm_head.weight)
    state = json.loads((results["q2sid"].final_dir / "trainer_state.json").read_text())
    assert state["init_from"] == str(results["i2sid"].final_dir)


def test_trained_model_retrieves_through_the_trie(data, tmp_path) -> None:
    t, tok, datasets = data
    model = build_model(TINY, len(tok), tokenizer=tok)
    train_sft(
        model,
        tok,
        datasets["i2sid"],
        SFTConfig(stage="i2sid", max_steps=120, batch_size=24, lr=1e-2, warmup_steps=5, weight_decay=0.0),
        tmp_path,
        show_progress=False,
    )
    trie = SidTrie.from_sids(np.array(t.sids["codes"].tolist()))
    prompts = datasets["i2sid"].prompts
    beams = beam_search(model, tok, trie, prompts, beam_size=5)
    hits = [tuple(target) in set(b.as_tuples()) for b, target in zip(beams, datasets["i2sid"].targets)]
    assert np.mean(hits) > 0.5  # 24 memorisable items; random choice would hit 5/24


def test_lr_schedule() -> None:
    cfg = SFTConfig(lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, 100, cfg) == pytest.approx(0.1)
    assert lr_at(9, 100, cfg) == pytest.approx(1.0)
    assert lr_at(99, 100, cfg) == pytest.approx(0.1, abs=1e-3)
    assert all(lr_at(s, 100, cfg) >= lr_at(s + 1, 100, cfg) for s in range(10, 99))


def test_rejects_mismatched_dataset(data, tmp_path) -> None:
    _, tok, datasets = data
    bad = datasets["i2sid"]
    bad = type(bad)(bad.prompts, bad.targets[:, :3], "bad")
    with pytest.raises(ValueError):
        train_sft(
            build_model(TINY, len(tok), tokenizer=tok), tok, bad, SFTConfig(max_steps=1), tmp_path, show_progress=False
        )


def test_validation_split_holds_out_whole_texts_and_keeps_the_best_weights(data, tmp_path) -> None:
    from genrecall.gen.sft import validation_loss, validation_split

    _, tok, datasets = data
    ds = datasets["q2sid"]
    train_rows, val_rows = validation_split(ds, 0.3, seed=0)
    assert len(val_rows) and len(train_rows) and len(train_rows) + len(val_rows) == len(ds)
    assert not {ds.texts[i] for i in train_rows} & {ds.texts[i] for i in val_rows}  # a held-out query is unseen
    model = build_model(TINY, len(tok), tokenizer=tok)
    cfg = SFTConfig(
        stage="q2sid",
        max_steps=120,
        batch_size=8,
        lr=2e-2,
        warmup_steps=2,
        val_share=0.3,
        eval_every=5,
        patience=2,
        seed=0,
    )
    res = train_sft(model, tok, ds, cfg, tmp_path, show_progress=False)
    assert res.val_losses and (tmp_path / "val.csv").exists()
    best_step, best_loss = min(res.val_losses, key=lambda sv: sv[1])
    assert res.best_step == best_step
    assert res.stopped_early == (res.steps < 120)
    final = load_generator(res.final_dir)  # the saved model is the best one, not the last
    val = ds.subset(val_rows)
    assert validation_loss(final.model, val, tok, torch.device("cpu")) == pytest.approx(best_loss, rel=1e-4)


def test_replay_mixes_earlier_stages_rows_in(data) -> None:
    from genrecall.gen.sft import with_replay

    _, _, datasets = data
    q, i = datasets["q2sid"], datasets["i2sid"]
    mixed = with_replay(q, [i], 0.5, seed=1)
    n = min(len(i), round(0.5 * len(q)))
    assert len(mixed) == len(q) + n and mixed.kind == "q2sid"
    assert mixed.prompts[: len(q)] == q.prompts and all(p in i.prompts for p in mixed.prompts[len(q) :])
    assert with_replay(q, [i], 0.0) is q and with_replay(q, [], 1.0) is q


def test_replayed_rows_train_but_never_validate(data, tmp_path) -> None:
    """With replay on, the validation loss is this stage's held-out rows only: rows an earlier stage
    trained on are memorised, and their loss rising as the new stage learns hid every gain (the Home
    Depot Q2SID stage never beat its step 0 while replayed item rows sat in its validation set)."""
    import math

    from genrecall.gen.sft import validation_loss, validation_split

    _, tok, datasets = data
    q, i = datasets["q2sid"], datasets["i2sid"]
    train_rows, val_rows = validation_split(q, 0.3, seed=0)
    model = build_model(TINY, len(tok), tokenizer=tok)
    at_start = validation_loss(model, q.subset(val_rows), tok, torch.device("cpu"))
    cfg = SFTConfig(
        stage="q2sid", epochs=1, batch_size=8, warmup_steps=2, val_share=0.3, replay=1.0, eval_every=3, patience=1000
    )
    res = train_sft(model, tok, q, cfg, tmp_path, replay_from=[i], show_progress=False)
    assert res.val_losses[0] == (0, pytest.approx(at_start, rel=1e-5))
    # one epoch = the stage's training rows plus as many replayed rows
    replayed = min(len(i), len(train_rows))
    assert not res.stopped_early and res.steps == math.ceil((len(train_rows) + replayed) / 8)
