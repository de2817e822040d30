"""How GPU steps are placed: the Dagster pool `gpu`, and dagster-k8s tags asking Kubernetes for one NVIDIA GPU.

Node selector and tolerations come from the environment of the code location, as JSON, so a deployment sets them
without a code change (deploy/ has an example):
    REC_PIPELINE_GPU_NODE_SELECTOR='{"cloud.google.com/gke-accelerator": "nvidia-l4"}'
    REC_PIPELINE_GPU_TOLERATIONS='[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]'
"""

import json
import os

GPU_POOL = "gpu"
# GPU node pools are usually tainted so that only pods asking for a GPU land there.
DEFAULT_TOLERATIONS = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def gpu_op_tags() -> dict:
    node_selector = json.loads(os.environ.get("REC_PIPELINE_GPU_NODE_SELECTOR", "{}"))
    tolerations = json.loads(os.environ.get("REC_PIPELINE_GPU_TOLERATIONS", json.dumps(DEFAULT_TOLERATIONS)))
    return {
        "dagster-k8s/config": {
            "container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}}},
            "pod_spec_config": {"node_selector": node_selector, "tolerations": tolerations},
        }
    }
