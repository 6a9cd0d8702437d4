"""Serving: the retrieval bundle (generator + SID tokenizer + index, verified as one unit), the
promotion gate with its atomic production pointer, and the in-process retriever the HTTP service uses.

    tag = save_to_store(bundle_dir)                      # bundle.py
    decision = gate(tag, GateConfig())                   # gate.py: promote if no worse than production
    retriever = Retriever.load(production_tag())         # retriever.py
    retriever.search("red kettle", user_id="u000042", k=50, beam_size=20)

Importing the package loads torch and transformers (the bundle and retriever need them).
"""

from genrecall.serving.bundle import BUNDLE_NAME, Bundle, BundleError, Manifest, save_to_store, verify, write_bundle
from genrecall.serving.gate import GateConfig, GateDecision, ProductionPointer, gate, production_tag, promote, rollback
from genrecall.serving.retriever import Hit, InvalidRequest, Retriever, SearchRequest, SearchResponse, ServeConfig

__all__ = [
    "BUNDLE_NAME",
    "Bundle",
    "BundleError",
    "GateConfig",
    "GateDecision",
    "Hit",
    "InvalidRequest",
    "Manifest",
    "ProductionPointer",
    "Retriever",
    "SearchRequest",
    "SearchResponse",
    "ServeConfig",
    "gate",
    "production_tag",
    "promote",
    "rollback",
    "save_to_store",
    "verify",
    "write_bundle",
]
