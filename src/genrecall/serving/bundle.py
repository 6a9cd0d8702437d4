"""The retrieval bundle: everything a server needs to answer a query, verified as one unit.

A bundle is a directory (and, once saved, one model in the BentoML model store)::

    manifest.json          version, created_at, parent, data_version, params_hash, metrics,
                           index_fingerprint, sid_vocab_sizes, and a sha256 of every other file
    generator/             config.json, model.safetensors, tokenizer.json (+ generator.json, trainer_state.json)
    sid_tokenizer/         model.safetensors, tokenizer.json (the frozen CQ-SID codebooks)
    index/                 sid_assignments.parquet, index.json (SID -> items; the trie is rebuilt from it)
    items.parquet          item_id, title, quality (smoothed CTR), category_id
    categories.parquet     category_id, name (renders a user's recent categories into the prompt)
    examples.json          optional: known users and frequent queries the search page offers (showcase.py)

Generator and index are only ever served together (DESIGN.md section 2). ``Bundle.load`` refuses a
bundle whose files do not match their hashes, that has files the manifest does not list, whose index
is not the one the manifest names, or whose generator cannot emit every SID of its index. Only
``.json``, ``.safetensors`` and ``.parquet`` files are copied in, so nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from genrecall.atomic import write_json_atomic
from genrecall.faults import crashpoint
from genrecall.gen.model import Generator, load_generator
from genrecall.sid.index import SidIndex
from genrecall.sid.tokenizer import SidTokenizer
from genrecall.sid.trie import SidTrie

BUNDLE_NAME = "genrecall-bundle"  # the BentoML model name of every bundle
FORMAT, FORMAT_VERSION = "genrecall-bundle", 1
MANIFEST = "manifest.json"
EXAMPLES = "examples.json"  # optional; written by package (genrecall.serving.showcase)
STORE_FILES = frozenset({"model.yaml"})  # written by the BentoML store itself, outside the manifest
SAFE_SUFFIXES = (".json", ".safetensors", ".parquet")  # no pickle-capable format ever enters a bundle


class BundleError(ValueError):
    """A bundle that must not be served: tampered, incomplete, or generator and index disagree."""


@dataclass(frozen=True)
class Manifest:
    """What a bundle is and where it came from; ``files`` maps each relative path to its sha256."""

    version: str
    created_at: str
    data_version: str
    params_hash: str
    index_fingerprint: str
    sid_vocab_sizes: tuple[int, ...]
    items: int
    sids: int
    files: dict[str, str]
    parent: str | None = None  # the production bundle this one was built to replace
    metrics: dict[str, Any] = field(default_factory=dict)  # reports/metrics.json at build time
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sid_vocab_sizes"] = list(self.sid_vocab_sizes)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        if d.get("format") != FORMAT:
            raise BundleError(f"not a genrecall bundle manifest (format {d.get('format')!r})")
        if d.get("format_version") != FORMAT_VERSION:
            raise BundleError(f"bundle format version {d.get('format_version')} is not {FORMAT_VERSION}")
        d = dict(d)
        d["sid_vocab_sizes"] = tuple(int(s) for s in d["sid_vocab_sizes"])
        return cls(**d)

    def content_digest(self) -> str:
        """A hash of the bundle's content (file hashes, lineage, metrics), independent of when it was built."""
        blob = json.dumps(
            {"files": self.files, "data": self.data_version, "params": self.params_hash, "metrics": self.metrics},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()


# -- hashing ------------------------------------------------------------------------------------------
def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _bundle_files(root: Path) -> list[str]:
    """Relative posix paths of every file under ``root`` except the manifest and the store's own file."""
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and rel != MANIFEST and rel not in STORE_FILES:
            out.append(rel)
    return out


def index_fingerprint(index: SidIndex) -> str:
    """A content hash of the index: depth, suffix rule and every (item_id, SID), in item order."""
    ids = index.item_ids()
    h = hashlib.sha256(json.dumps([index.depth, index.suffix_mode, list(index.codebook_sizes or ())]).encode())
    h.update(ids.astype("<i8").tobytes())
    h.update(index.sid_of(ids).astype("<i8").tobytes())
    return h.hexdigest()


def data_version(data_dir: str | Path, *, dvc_lock: str | Path | None = None) -> str:
    """The version of the data a bundle was built from: the ``dvc.lock`` md5 of ``data_dir`` when DVC
    tracks it (``dvc:<md5>``), else a sha256 over its files (``sha256:<hex>``)."""
    data_dir = Path(data_dir)
    lock = Path(dvc_lock) if dvc_lock is not None else Path("dvc.lock")
    if lock.exists():
        stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
        for stage in stages.values():
            for out in stage.get("outs", []) or []:
                if Path(out.get("path", "")) == data_dir and out.get("md5"):
                    return f"dvc:{out['md5']}"
    h = hashlib.sha256()
    for rel in _bundle_files(data_dir) if data_dir.exists() else []:
        h.update(f"{rel}\0{sha256_file(data_dir / rel)}\n".encode())
    return f"sha256:{h.hexdigest()}"


# -- consistency --------------------------------------------------------------------------------------
def check_consistency(gen_sid_vocab: tuple[int, ...], sid_tok: SidTokenizer, index: SidIndex) -> None:
    """Raise ``BundleError`` unless the generator's SID vocabulary, the SID tokenizer and the index agree:
    same depth, same level codebook sizes, and every SID of the index emittable by the generator."""
    if len(gen_sid_vocab) != index.depth:
        raise BundleError(f"generator emits SIDs of depth {len(gen_sid_vocab)}, the index holds depth {index.depth}")
    levels = tuple(int(k) for k in sid_tok.codebook_sizes)
    if index.codebook_sizes is not None and tuple(index.codebook_sizes) != levels:
        raise BundleError(
            f"SID tokenizer codebooks {levels} != index codebooks {index.codebook_sizes}: built by different tokenizers"
        )
    if tuple(gen_sid_vocab[:-1]) != levels:
        raise BundleError(
            f"generator SID vocabulary {gen_sid_vocab[:-1]} != SID tokenizer codebooks {levels}: "
            "the generator was trained on another SID tokenizer"
        )
    sids = index.sids()
    if len(sids):
        too_big = np.flatnonzero(sids.max(axis=0) >= np.asarray(gen_sid_vocab))
        if too_big.size:
            raise BundleError(f"the index uses codes the generator cannot emit at SID position(s) {too_big.tolist()}")


# -- building -------------------------------------------------------------------------------------------
def _copy_safe(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    copied = 0
    for p in sorted(src.iterdir()):
        if p.is_file() and p.suffix in SAFE_SUFFIXES:
            shutil.copy2(p, dst / p.name)
            copied += 1
    if not copied:
        raise BundleError(f"{src}: nothing to bundle (expected .json/.safetensors files)")


def write_bundle(
    out_dir: str | Path,
    *,
    generator_dir: str | Path,
    sid_model_dir: str | Path,
    index_dir: str | Path,
    items: pd.DataFrame,
    categories: pd.DataFrame | None = None,
    metrics: dict[str, Any] | None = None,
    data_version: str = "",
    params_hash: str = "",
    parent: str | None = None,
    version: str | None = None,
    examples: dict[str, Any] | None = None,
) -> Manifest:
    """Assemble a bundle directory from pipeline outputs and write its manifest (last, atomically).

    ``items`` needs ``item_id``, ``title``, ``quality`` (and optionally ``category_id``); rows are
    kept for indexed items only, and an indexed item without a row is an error. ``version`` defaults
    to ``<UTC time>-<content digest>``. ``examples`` (``Showcase.to_dict()``) becomes ``examples.json``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if (out / MANIFEST).exists() or _bundle_files(out):
        raise BundleError(f"{out} is not empty")
    for sub, src in (("generator", generator_dir), ("sid_tokenizer", sid_model_dir), ("index", index_dir)):
        _copy_safe(Path(src), out / sub)
    gen_tok = json.loads((out / "generator" / "tokenizer.json").read_text())
    gen_vocab = tuple(int(s) for s in gen_tok["sid_vocab_sizes"])
    sid_tok, index = SidTokenizer.load(out / "sid_tokenizer"), SidIndex.load(out / "index")
    check_consistency(gen_vocab, sid_tok, index)

    missing = {"item_id", "title", "quality"} - set(items.columns)
    if missing:
        raise BundleError(f"items table lacks columns {sorted(missing)}")
    ids = index.item_ids()
    table = items.drop_duplicates("item_id", keep="last").set_index("item_id")
    absent = np.setdiff1d(ids, table.index.to_numpy(np.int64))
    if absent.size:
        raise BundleError(f"{absent.size} indexed item(s) have no title/quality row, e.g. {absent[:5].tolist()}")
    table = table.loc[ids]
    cat = table["category_id"] if "category_id" in table else pd.Series(-1, index=table.index)
    pd.DataFrame(
        {
            "item_id": ids,
            "title": table["title"].fillna("").astype(str).to_numpy(),
            "quality": table["quality"].astype(np.float64).fillna(0.0).to_numpy(),
            "category_id": pd.to_numeric(cat, errors="coerce").fillna(-1).astype(np.int64).to_numpy(),
        }
    ).to_parquet(out / "items.parquet", index=False)
    cats = categories if categories is not None else pd.DataFrame({"category_id": [], "name": []})
    pd.DataFrame(
        {"category_id": cats["category_id"].astype(np.int64).to_numpy(), "name": cats["name"].astype(str).to_numpy()}
    ).to_parquet(out / "categories.parquet", index=False)
    if examples is not None:
        (out / EXAMPLES).write_text(json.dumps(examples, indent=2, sort_keys=True))

    files = {rel: sha256_file(out / rel) for rel in _bundle_files(out)}
    manifest = Manifest(
        version="",
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        data_version=data_version,
        params_hash=params_hash,
        index_fingerprint=index_fingerprint(index),
        sid_vocab_sizes=gen_vocab,
        items=len(index),
        sids=index.n_sids,
        files=files,
        parent=parent,
        metrics=dict(metrics or {}),
    )
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    manifest = Manifest(**{**asdict(manifest), "version": version or f"{stamp}-{manifest.content_digest()[:10]}"})
    write_json_atomic(out / MANIFEST, manifest.to_dict())
    return manifest


# -- verification and loading -----------------------------------------------------------------------------
def read_manifest(path: str | Path) -> Manifest:
    path = Path(path)
    if not (path / MANIFEST).exists():
        raise BundleError(f"{path}: no {MANIFEST}; not a bundle (or an unfinished one)")
    try:
        return Manifest.from_dict(json.loads((path / MANIFEST).read_text()))
    except (json.JSONDecodeError, TypeError, KeyError) as exc:
        raise BundleError(f"{path}/{MANIFEST} is unreadable: {exc}") from None


def verify(path: str | Path) -> Manifest:
    """Check every file against the manifest; raise ``BundleError`` naming what differs."""
    path = Path(path)
    manifest = read_manifest(path)
    present = set(_bundle_files(path))
    listed = set(manifest.files)
    problems = [f"missing {rel}" for rel in sorted(listed - present)]
    problems += [f"unlisted file {rel}" for rel in sorted(present - listed)]
    problems += [
        f"hash mismatch {rel}" for rel in sorted(listed & present) if sha256_file(path / rel) != manifest.files[rel]
    ]
    unsafe = [rel for rel in present if not rel.endswith(SAFE_SUFFIXES)]
    problems += [f"unsafe file type {rel}" for rel in sorted(unsafe)]
    if problems:
        raise BundleError(f"bundle {manifest.version} at {path} failed verification: " + "; ".join(problems[:10]))
    return manifest


@dataclass(frozen=True)
class ItemTable:
    """Titles, quality and category of the bundle's items, aligned with ``item_id`` (sorted)."""

    item_id: np.ndarray  # int64, sorted
    title: np.ndarray  # object (str)
    quality: np.ndarray  # float64
    category_id: np.ndarray  # int64, -1 = unknown

    def rows(self, item_ids: np.ndarray) -> np.ndarray:
        """Row of each id (ids must be in the table)."""
        return np.searchsorted(self.item_id, np.asarray(item_ids, dtype=np.int64))


@dataclass
class Bundle:
    """A verified, loaded bundle."""

    path: Path
    manifest: Manifest
    generator: Generator
    sid_tokenizer: SidTokenizer
    index: SidIndex
    items: ItemTable
    category_names: dict[int, str]
    tag: str | None = None  # "genrecall-bundle:<version>" when it came from the BentoML store
    examples: dict[str, Any] = field(default_factory=dict)  # examples.json (empty for bundles without it)

    @property
    def version(self) -> str:
        return self.tag or self.manifest.version

    @property
    def trie(self) -> SidTrie:
        return self.index.trie

    @classmethod
    def load(cls, source: str | Path, *, device: str = "cpu") -> Bundle:
        """Load a bundle from a directory or a BentoML store tag; verifies hashes and consistency first."""
        path, tag = resolve(source)
        manifest = verify(path)
        generator = load_generator(path / "generator", device=device)
        sid_tok = SidTokenizer.load(path / "sid_tokenizer")
        index = SidIndex.load(path / "index")
        if index_fingerprint(index) != manifest.index_fingerprint:
            raise BundleError(f"bundle {manifest.version}: the index is not the one its manifest names")
        if generator.tokenizer.sid_vocab_sizes != manifest.sid_vocab_sizes:
            raise BundleError(f"bundle {manifest.version}: generator SID vocabulary differs from the manifest")
        check_consistency(generator.tokenizer.sid_vocab_sizes, sid_tok, index)
        df = pd.read_parquet(path / "items.parquet")
        items = ItemTable(
            df["item_id"].to_numpy(np.int64),
            df["title"].astype(str).to_numpy(dtype=object),
            df["quality"].to_numpy(np.float64),
            df["category_id"].to_numpy(np.int64),
        )
        if not np.array_equal(items.item_id, index.item_ids()):
            raise BundleError(f"bundle {manifest.version}: items table and index hold different items")
        cats = pd.read_parquet(path / "categories.parquet")
        names = {int(c): str(n) for c, n in zip(cats["category_id"], cats["name"])}
        examples = json.loads((path / EXAMPLES).read_text()) if (path / EXAMPLES).exists() else {}
        return cls(path, manifest, generator, sid_tok, index, items, names, tag, examples)


# -- the BentoML model store ------------------------------------------------------------------------------
def resolve(source: str | Path) -> tuple[Path, str | None]:
    """(directory, tag): an existing directory is used as is; anything else is a store tag."""
    if isinstance(source, Path) or Path(str(source)).is_dir():
        path = Path(source)
        if not path.is_dir():
            raise BundleError(f"no bundle directory at {path}")
        return path, None
    import bentoml
    from bentoml.exceptions import NotFound

    tag = str(source) if ":" in str(source) else f"{source}:latest"
    try:
        model = bentoml.models.get(tag)
    except NotFound:
        raise BundleError(f"no bundle {tag!r} in the BentoML model store") from None
    return Path(model.path), str(model.tag)


def save_to_store(bundle_dir: str | Path, *, name: str = BUNDLE_NAME, labels: dict[str, str] | None = None) -> str:
    """Copy a verified bundle directory into the BentoML model store as ``name:<version>``; returns the tag.

    Saving the same bundle twice returns the existing tag (the version is content-addressed).
    """
    import bentoml
    from bentoml.exceptions import NotFound

    manifest = verify(bundle_dir)
    tag = f"{name}:{manifest.version}"
    try:
        existing = bentoml.models.get(tag)
        try:
            same = verify(existing.path).files == manifest.files
        except BundleError:  # a save killed half-way: the same version, incomplete; replace it
            bentoml.models.delete(tag)
        else:
            if same:
                return str(existing.tag)
            raise BundleError(f"{tag} already exists in the store with different content")
    except NotFound:
        pass
    meta = {
        "data_version": manifest.data_version,
        "params_hash": manifest.params_hash,
        "parent": manifest.parent or "",
        "items": manifest.items,
        "sids": manifest.sids,
        "created_at": manifest.created_at,
    }
    with bentoml.models.create(tag, labels={"format": FORMAT, **(labels or {})}, metadata=meta) as model:
        shutil.copytree(bundle_dir, model.path, dirs_exist_ok=True)
        crashpoint("package:store-copied")  # drill: files copied, the model not yet saved to the store
    verify(bentoml.models.get(tag).path)
    return tag


def list_bundles(name: str = BUNDLE_NAME) -> list[str]:
    """Tags of every bundle in the store, oldest first."""
    import bentoml

    models = [m for m in bentoml.models.list() if m.tag.name == name]
    return [str(m.tag) for m in sorted(models, key=lambda m: m.info.creation_time)]


def bundle_metrics(source: str | Path) -> dict[str, Any]:
    """The metrics recorded in a bundle's manifest (no weights are loaded)."""
    return read_manifest(resolve(source)[0]).metrics
