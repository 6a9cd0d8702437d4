"""Prefect flows over genrecall's stage functions (no logic here: see ``genrecall.pipeline.daily``)."""
