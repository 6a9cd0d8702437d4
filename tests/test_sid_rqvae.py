"""RQ-VAE internals: k-means init, EMA codebooks, dead-code restart, straight-through gradients."""

from __future__ import annotations

import logging

import torch

from genrecall.sid.rqvae import RQVAE, EMACodebook, dead_after_steps, kmeans

torch.set_num_threads(1)


def _blobs(n_per: int = 50, centres: int = 4, dim: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(centres, dim, generator=g) * 5
    x = c.repeat_interleave(n_per, 0) + 0.1 * torch.randn(centres * n_per, dim, generator=g)
    return x, c


def test_kmeans_finds_separated_blobs() -> None:
    x, c = _blobs()
    cent = kmeans(x, 4, iters=20, generator=torch.Generator().manual_seed(0))
    # every true centre has a centroid close to it
    assert torch.cdist(c, cent).min(dim=1).values.max() < 0.5
    assert kmeans(x[:3], 8, generator=torch.Generator().manual_seed(0)).shape == (8, 8)  # k > n works


def test_ema_moves_codes_to_the_mean_of_their_items() -> None:
    book = EMACodebook(2, 2, decay=0.5, dead_after=1000)
    book.set_codes(torch.tensor([[0.0, 0.0], [10.0, 10.0]]))
    x = torch.tensor([[1.0, 1.0], [1.2, 0.8], [9.0, 9.0]])
    for _ in range(30):
        book.update(x, book.nearest(x))
    assert torch.allclose(book.embed[0], torch.tensor([1.1, 0.9]), atol=1e-3)
    assert torch.allclose(book.embed[1], torch.tensor([9.0, 9.0]), atol=1e-3)


def test_dead_code_restart_revives_unused_codes(caplog: logging.LogCaptureFixture) -> None:
    x, _ = _blobs(centres=4)
    book = EMACodebook(8, x.shape[1], decay=0.9, dead_after=5)
    far = torch.full((8, x.shape[1]), 100.0)
    far[0] = x.mean(0)  # one code near the data, seven far away and never chosen
    book.set_codes(far)
    gen = torch.Generator().manual_seed(0)
    restarted = 0
    with caplog.at_level(logging.DEBUG, logger="genrecall.sid.rqvae"):
        for _ in range(40):
            restarted += book.update(x, book.nearest(x), gen)
    assert restarted >= 7 and book.restarts == restarted
    assert any("restarted" in r.getMessage() for r in caplog.records)  # restarts are logged
    used = torch.bincount(book.nearest(x), minlength=8)
    assert int((used > 0).sum()) >= 4  # the revived codes now cover the four blobs
    assert book.embed.abs().max() < 50  # no code is left out at 100


def test_protected_codes_are_never_restarted() -> None:
    x, _ = _blobs()
    book = EMACodebook(4, x.shape[1], dead_after=2)
    codes = torch.full((4, x.shape[1]), 100.0)
    codes[0] = 0.0
    book.set_codes(codes)
    book.protected[1] = True
    for _ in range(10):
        book.update(x, torch.zeros(len(x), dtype=torch.long))
    assert torch.all(book.embed[1] == 100.0)  # a category code keeps its place
    assert not torch.all(book.embed[2] == 100.0)


def test_forward_codes_forcing_and_straight_through() -> None:
    torch.manual_seed(0)
    x, _ = _blobs(n_per=20)
    model = RQVAE(x.shape[1], hidden_dims=(16,), latent_dim=4, codebook_sizes=(4, 3))
    forced = torch.full((len(x),), -1, dtype=torch.long)
    forced[:10] = 2
    with torch.no_grad():
        model.init_codebooks(model.encoder(x), forced, iters=5)
    assert bool(model.levels[0].protected[2]) and int(model.levels[0].protected.sum()) == 1
    model.train()
    out = model(x, forced)
    assert out.codes.shape == (len(x), 2) and torch.all(out.codes[:10, 0] == 2)
    (torch.nn.functional.mse_loss(out.recon, x) + out.commitment).backward()
    assert model.encoder[0].weight.grad is not None and model.encoder[0].weight.grad.abs().sum() > 0
    frozen = model.codes(x, forced)
    assert torch.all(frozen[:10, 0] == 2) and frozen.shape == (len(x), 2)


def test_dead_after_scales_with_codebook() -> None:
    assert dead_after_steps(32, 128) == 100
    assert dead_after_steps(4096, 128) == 8 * 32
    assert dead_after_steps(32, 128, steps_per_epoch=5) == 5  # tiny catalogs: one epoch unused is dead
