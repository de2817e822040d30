"""Retraining on new data: the sensor on a real instance and DVC repository, one run per new raw data version."""

import json

import dagster as dg
import mlflow

from orchestration.definitions import build_definitions, default_resources
from rec_pipeline.generate import GeneratorConfig, append_day
from orchestration.sensors import RANGE_END, RANGE_START, raw_data_version, version_key
from rec_pipeline.versioning import dvc_md5
from tests.test_pipeline import days_of, instance, metadata_of, new_project, project, run_main  # noqa: F401 (fixtures)


def tick(definitions: dg.Definitions, instance: dg.DagsterInstance, root, cursor: str | None):
    sensor = definitions.resolve_sensor_def("new_raw_data")
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=default_resources(str(root))) as context:
        return sensor.evaluate_tick(context)


def launch(definitions: dg.Definitions, instance: dg.DagsterInstance, tick_result, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    """What the daemon does with a tick's result: the new days become partitions, then the request runs."""
    for change in tick_result.dynamic_partitions_requests or []:
        if isinstance(change, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(change.partitions_def_name, list(change.partition_keys))
        else:
            for key in change.partition_keys:
                instance.delete_dynamic_partition(change.partitions_def_name, key)
    job = definitions.resolve_job_def("main")
    return job.execute_in_process(instance=instance, tags=request.tags, raise_on_error=False)


def champion(root) -> str:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    return str(client.get_model_version_by_alias("rec_pipeline_ranker", "champion").version)


def test_a_new_day_of_logs_retrains_once_traces_back_to_its_bytes_and_a_corrupt_day_is_blocked(project, instance, capsys):
    root, _ = project
    definitions = build_definitions(default_resources(str(root)))
    assert run_main(root, instance).success
    assert champion(root) == "1"

    # What is materialised is not new: no run.
    first = tick(definitions, instance, root, cursor=None)
    assert first.run_requests == [] and "already materialised" in first.skip_message

    # A new day of logs lands: exactly one run request, keyed by the new version, over that day alone (it becomes a
    # partition as the request runs); the same version again: none.
    new_file = append_day(root / "data" / "raw", GeneratorConfig.small())
    second = tick(definitions, instance, root, cursor=first.cursor)
    [request] = second.run_requests
    assert request.run_key == second.cursor != first.cursor and request.run_key.startswith("events ")
    resources = default_resources(str(root))
    assert request.run_key == version_key(raw_data_version(resources["store"], resources["source"]))
    assert (request.tags[RANGE_START], request.tags[RANGE_END]) == ("2025-09-21", "2025-09-21") and new_file.name == "events-2025-09-21.jsonl"
    [added] = second.dynamic_partitions_requests
    assert list(added.partition_keys) == ["2025-09-21"]
    third = tick(definitions, instance, root, cursor=second.cursor)
    assert third.run_requests == [] and "unchanged" in third.skip_message

    retrained = launch(definitions, instance, second, request)
    assert retrained.success
    # Only the new day was read and validated: a new day costs a day. The training read every day.
    assert list(days_of(retrained, "raw_events")) == list(days_of(retrained, "validated_events")) == ["2025-09-21"]
    events = days_of(retrained, "raw_events")["2025-09-21"]
    assert events["files"] == 1 and events["dvc_md5"] == dvc_md5(root / "data" / "raw" / "events")
    assert len(metadata_of(retrained, "training_splits")["days_read"]) == 21
    report = metadata_of(retrained, "eval_report")
    # The champion moves only if the gate passed.
    assert champion(root) == ("2" if report["gate_decision"] == "promoted" else "1")
    before = champion(root)

    # The retrained model's lineage, read back from the registry and the event log: down to the new raw bytes.
    from orchestration.lineage import main as lineage

    assert lineage(["2", "--json", "--tracking-uri", f"sqlite:///{root / 'mlflow.db'}"]) == 0
    traced = json.loads(capsys.readouterr().out)
    assert traced["dagster_run_id"] == retrained.run_id and traced["registry"]["model"] == "models:/rec_pipeline_ranker/2"
    onnx = traced["chain"]
    assert onnx["onnx_sha256"] == metadata_of(retrained, "ranker_onnx")["onnx_sha256"]
    [ranker] = onnx["upstream"]
    assert ranker["git_commit"] and ranker["mlflow_run_id"] == traced["registry"]["mlflow_run_id"]
    nodes = {}

    def collect(node):
        nodes[node["asset"]] = node
        for child in node.get("upstream", []):
            collect(child)

    collect(onnx)
    assert set(nodes) == {"ranker_onnx", "ranker", "item_embeddings", "training_splits", "validated_events", "validated_catalog", "raw_events", "item_catalog"}
    assert nodes["raw_events"]["dvc_md5"] == events["dvc_md5"] and nodes["raw_events"]["files"] == 21
    assert nodes["raw_events"]["days"][-1] == {"day": "2025-09-21", "md5": events["md5"], "files": 1}
    validated = nodes["validated_events"]
    assert validated["rows_in"] == validated["rows_valid"] + validated["rows_quarantined"] and len(validated["days"]) == 21
    assert validated["days"][-1]["rows_in"] == days_of(retrained, "validated_events")["2025-09-21"]["rows_in"]
    assert nodes["item_embeddings"]["model"] == "all-MiniLM-L6-v2" and len(nodes["item_embeddings"]["weights_sha256"]) == 64
    assert lineage(["2", "--tracking-uri", f"sqlite:///{root / 'mlflow.db'}"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("models:/rec_pipeline_ranker/2") and "raw_events: dvc_md5" in printed
    assert lineage(["no-such-run", "--tracking-uri", f"sqlite:///{root / 'mlflow.db'}"]) == 2
    assert "no Dagster run no-such-run" in capsys.readouterr().err
    # Even without the cursor, the materialised version is not requested again.
    assert tick(definitions, instance, root, cursor=None).run_requests == []

    # A corrupt new file: requested once, and the blocking validation check stops the run before the ranker.
    # Every field present, every value wrong: garbled timestamps and an event type nobody logs.
    garbled = [
        {"event_id": f"x{n}", "ts": "yesterday", "user_id": "u00001", "session_id": "s1", "event_type": "teleport",
         "item_id": None, "query": None, "price": None, "quantity": None}
        for n in range(1500)
    ]
    (root / "data/raw/events/events-2025-09-22.jsonl").write_text("".join(json.dumps(r) + "\n" for r in garbled))
    fourth = tick(definitions, instance, root, cursor=second.cursor)
    [corrupt] = fourth.run_requests
    assert (corrupt.tags[RANGE_START], corrupt.tags[RANGE_END]) == ("2025-09-22", "2025-09-22")
    blocked = launch(definitions, instance, fourth, corrupt)
    checks = {(e.asset_key.to_user_string(), e.check_name): e.passed for e in blocked.get_asset_check_evaluations()}
    assert checks[("validated_events", "quarantine_share")] is False
    materialised = {e.asset_key.to_user_string() for e in blocked.get_asset_materialization_events()}
    assert "ranker" not in materialised and "eval_report" not in materialised
    assert champion(root) == before


def test_the_nightly_schedule_runs_the_main_job():
    schedule = build_definitions(default_resources()).resolve_schedule_def("nightly_retrain")
    assert schedule.job_name == "main" and schedule.cron_schedule == "0 3 * * *" and schedule.execution_timezone == "UTC"


def test_before_any_raw_data_lands_the_sensor_skips_saying_why(tmp_path, instance):
    from rec_pipeline.versioning import init_dvc_repo

    init_dvc_repo(tmp_path)
    definitions = build_definitions(default_resources(str(tmp_path)))
    skipped = tick(definitions, instance, tmp_path, cursor=None)
    assert skipped.run_requests == [] and skipped.skip_message.startswith("no raw data to version: ")
    assert "data/raw/events: no such file or folder" in skipped.skip_message
