"""The `engine` resource: where the data stages run (rec_pipeline/engines/)."""

import dagster as dg

from rec_pipeline.engines import EngineName, make_engine, spark_settings, spark_target


class DataEngine(dg.ConfigurableResource):
    """Where the data stages (validation, splits, search sessions, item embeddings) run: `local`, pandas in the step's
    own process (the default, and what fits one machine), or `spark`, on the cluster `spark_conf` points at:
    `spark.master` local[N], spark://HOST:7077, k8s://..., yarn, or `spark.remote` sc://HOST:15002 for Spark Connect
    (README, "Scaling out"). The session comes from dagster-pyspark's lazy resource: a step that needs no Spark, and
    every step of a local run, starts no JVM."""

    name: EngineName = "local"
    spark_conf: dict[str, str] = {}

    def engine(self):
        if self.name == "local":
            return make_engine("local")
        from dagster_pyspark import LazyPySparkResource

        return make_engine("spark", spark=LazyPySparkResource(spark_config=spark_settings(self.spark_conf)))

    def describe(self) -> str:
        return self.name if self.name == "local" else f"spark ({spark_target(self.spark_conf)})"
