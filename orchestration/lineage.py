"""`rec-pipeline lineage <model version | Dagster run id> [--json]`: the chain from a registered model back to the raw
bytes and the code that made it, read from what was recorded, never recomputed.

The model version's tags name the Dagster run that exported it; from that run's `ranker_onnx` materialisation the
chain follows the input event pointers Dagster records on every materialisation (`dagster/input_event_pointer/...`),
so each step shows the exact materialisation its successor consumed, even one made by an earlier run.

Where the project is driven by `dvc repro`, dvc.lock records the md5 of every stage's outputs and of the raw folders
it read; each step of the chain shows them beside its own facts, and the raw folders say whether the lock's md5 is
the one this model was trained from (dvc.lock describes the last `dvc repro`, which need not be this model's run).
"""

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
INPUT_POINTER = "dagster/input_event_pointer/"
# What each step of the chain shows, from its materialisation's metadata.
FACTS = {
    "ranker_onnx": ["model_uri", "onnx_sha256", "ranker_weights_sha256", "opset", "parity_max_abs_diff"],
    "ranker": ["best_epoch", "val_ndcg@20", "shipped_trained_on", "mlflow_run_id", "git_commit"],
    "item_embeddings": ["model", "weights_sha256", "encoder_fingerprint", "items_total"],
    "training_splits": ["positive_events", "validation_start", "test_start", "train_interactions", "validation_interactions", "test_interactions", "cold_items", "new_users"],
    "validated_events": ["rows_in", "rows_valid", "rows_quarantined"],
    "validated_catalog": ["rows_in", "rows_valid", "rows_quarantined"],
    "raw_events": ["dvc_md5", "md5", "files", "path"],
    "item_catalog": ["dvc_md5", "files", "path"],
}


def _materialization(instance, asset: str, storage_id: int | None = None, run_id: str | None = None):
    import dagster as dg

    if run_id is not None:
        entries = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
        found = [e for e in entries if e.dagster_event.asset_key.to_user_string() == asset]
        if not found:
            raise LookupError(f"Dagster run {run_id} materialised no {asset}")
        return found[-1].asset_materialization
    result = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), storage_ids=[storage_id]), limit=1)
    if not result.records:
        raise LookupError(f"the event log has no materialisation {storage_id} of {asset}")
    return result.records[0].asset_materialization


def _node(instance, asset: str, materialization) -> dict:
    metadata = {k: v.value for k, v in materialization.metadata.items()}
    tags = materialization.tags or {}
    node = {"asset": asset, "data_version": tags.get("dagster/data_version"), **{k: metadata[k] for k in FACTS.get(asset, []) if k in metadata}}
    upstream = []
    for tag, pointer in sorted(tags.items()):
        if tag.startswith(INPUT_POINTER):
            parent = tag[len(INPUT_POINTER) :]
            if parent in DAILY and "days_read" in metadata:  # one pointer stands for many days: each day as read
                upstream.append(_daily_node(instance, parent, metadata["days_read"]))
                continue
            upstream.append(_node(instance, parent, _materialization(instance, parent, storage_id=int(pointer))))
    if upstream:
        node["upstream"] = upstream
    return node


DAILY = {"validated_events": "raw_events"}  # the day-partitioned assets, and the raw partition each day was read from


def _daily_node(instance, asset: str, days_read: dict) -> dict:
    """A day-partitioned asset as its consumer read it: the materialisation of each day (`days_read`, recorded by the
    consumer: {day: {asset: storage id}}), its facts summed over the days and listed per day, and the raw days."""
    days, raw_days = [], []
    for day, pointers in sorted(days_read.items()):
        facts = _node(instance, asset, _materialization(instance, asset, storage_id=int(pointers[asset])))
        raw = _node(instance, DAILY[asset], _materialization(instance, DAILY[asset], storage_id=int(pointers[DAILY[asset]])))
        days.append({"day": day, **{k: facts[k] for k in FACTS[asset] if k in facts}})
        raw_days.append({"day": day, **{k: raw[k] for k in ("md5", "files") if k in raw}, "dvc_md5": raw.get("dvc_md5"), "path": raw.get("path")})
    node = {"asset": asset, "data_version": f"{len(days)} days", **{k: sum(d.get(k, 0) for d in days) for k in FACTS[asset]}, "days": days}
    latest = raw_days[-1] if raw_days else {}
    raw = {"asset": DAILY[asset], "data_version": f"{len(raw_days)} days", "dvc_md5": latest.get("dvc_md5"), "files": sum(d.get("files", 0) for d in raw_days),
           "path": latest.get("path"), "days": [{k: v for k, v in d.items() if k not in ("dvc_md5", "path")} for d in raw_days]}
    node["upstream"] = [raw]
    return node


def resolve(target: str, tracking_uri: str) -> tuple[str, dict]:
    """The Dagster run id behind `target` (a run id, a version number, or models:/name/version), and the registry's
    record of the version if one was named."""
    from rec_pipeline.registry import REGISTERED_MODEL, client_for

    name, version = REGISTERED_MODEL, None
    if target.startswith("models:/"):
        name, version = target[len("models:/") :].rsplit("/", 1)
    elif target.isdigit():
        version = target
    if version is None:
        return target, {}
    record = client_for(tracking_uri).get_model_version(name, version)
    registry = {"model": f"models:/{name}/{version}", "mlflow_run_id": record.run_id, "aliases": list(record.aliases), **record.tags}
    return record.tags["dagster_run_id"], registry


def dvc_lock_records(lock: Path) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """From dvc.lock: each asset's stage outputs {path: md5} (the stage's command names the assets it materialises),
    and the md5 of every dependency under data/raw."""
    stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    outs_by_asset, raw = {}, {}
    for stage in stages.values():
        words = shlex.split(stage.get("cmd", ""))
        assets = words[words.index("--assets") + 1].split(",") if "--assets" in words else []
        outs = {o["path"]: o["md5"] for o in stage.get("outs", [])}
        for asset in assets:
            outs_by_asset[asset] = outs
        raw.update({d["path"]: d["md5"] for d in stage.get("deps", []) if d["path"].startswith("data/raw")})
    return outs_by_asset, raw


def _attach_dvc_lock(node: dict, outs_by_asset: dict, raw: dict, root: Path) -> None:
    if node["asset"] in outs_by_asset:
        node["dvc_lock_outs"] = outs_by_asset[node["asset"]]
    path = node.get("path")
    if path is not None:
        path = Path(path).relative_to(root).as_posix() if Path(path).is_relative_to(root) else path  # the lock's paths are relative
        if path in raw:
            node["dvc_lock_md5"] = raw[path]
            node["dvc_lock_matches"] = raw[path] == node.get("dvc_md5")
    for child in node.get("upstream", []):
        _attach_dvc_lock(child, outs_by_asset, raw, root)


def lineage(target: str, tracking_uri: str, dvc_lock: Path | None = None) -> dict:
    import dagster as dg

    run_id, registry = resolve(target, tracking_uri)
    instance = dg.DagsterInstance.get()
    if instance.get_run_by_id(run_id) is None:
        raise LookupError(f"no Dagster run {run_id} in the instance at {os.environ.get('DAGSTER_HOME')}")
    chain = _node(instance, "ranker_onnx", _materialization(instance, "ranker_onnx", run_id=run_id))
    result = {"dagster_run_id": run_id, "registry": registry, "chain": chain, "dvc_lock": None}
    if dvc_lock is not None and dvc_lock.exists():
        _attach_dvc_lock(chain, *dvc_lock_records(dvc_lock), dvc_lock.resolve().parent)
        result["dvc_lock"] = str(dvc_lock)
    return result


def render(result: dict) -> str:
    lines = [f"Dagster run {result['dagster_run_id']}"]
    if result["registry"]:
        r = result["registry"]
        lines[0] = f"{r['model']} (aliases: {', '.join(r['aliases']) or 'none'}; gate: {r.get('gate_decision', 'not evaluated')}), exported by " + lines[0]

    shown = set()

    def walk(node: dict, prefix: str, last: bool) -> None:
        seen = (node["asset"], node["data_version"]) in shown
        shown.add((node["asset"], node["data_version"]))
        facts = "as above" if seen else ", ".join(f"{k} {v}" for k, v in node.items() if k not in ("asset", "upstream", "data_version", "days", "dvc_lock_outs", "dvc_lock_matches"))
        if not seen and node.get("days"):
            facts += f", {len(node['days'])} days ({node['days'][0]['day']} .. {node['days'][-1]['day']}; --json lists each)"
        if not seen and "dvc_lock_matches" in node:
            facts += " (the md5 this model was trained from)" if node["dvc_lock_matches"] else " (dvc.lock's last repro read other bytes)"
        lines.append(f"{prefix}{'└─ ' if last else '├─ '}{node['asset']}: {facts}")
        if not seen and node.get("dvc_lock_outs"):
            outs = ", ".join(f"{path} {md5}" for path, md5 in node["dvc_lock_outs"].items())
            lines.append(f"{prefix}{'   ' if last else '│  '}{'│  ' if node.get('upstream') else '   '}dvc.lock: {outs}")
        children = [] if seen else node.get("upstream", [])
        for i, child in enumerate(children):
            walk(child, prefix + ("   " if last else "│  "), i == len(children) - 1)

    walk(result["chain"], "", True)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rec-pipeline lineage", description=__doc__.splitlines()[0])
    parser.add_argument("target", help="a registered version (3 or models:/rec_pipeline_ranker/3) or a Dagster run id")
    parser.add_argument("--json", action="store_true", help="one JSON object, for machines")
    parser.add_argument("--tracking-uri", default=f"sqlite:///{ROOT / 'mlflow.db'}")
    parser.add_argument("--dvc-lock", type=Path, default=ROOT / "dvc.lock", help="read when it exists (after `dvc repro`)")
    args = parser.parse_args(argv)
    os.environ.setdefault("DAGSTER_HOME", str(ROOT / ".dagster_home"))
    try:
        result = lineage(args.target, args.tracking_uri, args.dvc_lock)
    except (LookupError, FileNotFoundError, KeyError) as err:
        print(f"error: {err.args[0] if isinstance(err, KeyError) else err}", file=sys.stderr)
        return 2
    except Exception as err:  # MLflow's "no such version" is its own exception type
        if type(err).__name__ != "MlflowException":
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result, default=str) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
