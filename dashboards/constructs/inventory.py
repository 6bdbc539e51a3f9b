"""What Athena needs to total the buckets' S3 Inventory reports for the reconciler (monitoring/inventory.py).

One Glue table per source bucket, the one AWS documents for Parquet inventory: Hive's SymlinkTextInputFormat over
the report's `hive/` folder, partitioned by `dt`. The partition is injected (partition projection), since every
query names exactly one report's `dt`: no crawler, no MSCK REPAIR after each report. A workgroup of its own keeps
the results in the inventory bucket and caps what one query may scan.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_athena as athena
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from dashboards.nag import acknowledge, objects_finding
from monitoring.inventory import athena_table_name
from pipeline.resources import INVENTORY_ID, INVENTORY_PREFIX, ResourceNames

# Where the workgroup writes query results, in the inventory bucket (expired with the reports).
RESULTS_PREFIX = "athena-results/"
# A report of 10^9 objects reads two columns of ~10^9 rows: well under 100 GB. A query past this is a mistake.
BYTES_SCANNED_CUTOFF = 100 * 2**30
# The report's columns the query reads (S3's Parquet inventory schema), and the partition.
COLUMNS = (("bucket", "string"), ("key", "string"), ("size", "bigint"))
PARTITION = "dt"


class InventoryQueries(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: ResourceNames,
        inventory_bucket: s3.IBucket,
        source_buckets: list[str],
    ) -> None:
        """`source_buckets`: the names of the buckets whose reports land in `inventory_bucket`."""
        super().__init__(scope, construct_id)
        self.inventory_bucket = inventory_bucket
        account = cdk.Aws.ACCOUNT_ID
        self.database_name = names.glue_database
        self.database = glue.CfnDatabase(
            self,
            "Database",
            catalog_id=account,
            database_input=glue.CfnDatabase.DatabaseInputProperty(
                name=self.database_name, description="S3 Inventory reports of the imgops buckets"
            ),
        )
        self.tables: list[glue.CfnTable] = []
        for index, bucket in enumerate(source_buckets):
            location = f"s3://{inventory_bucket.bucket_name}/{INVENTORY_PREFIX}/{bucket}/{INVENTORY_ID}/hive/"
            table = glue.CfnTable(
                self,
                f"Table{index}",
                catalog_id=account,
                database_name=self.database_name,
                table_input=glue.CfnTable.TableInputProperty(
                    name=athena_table_name(bucket),
                    table_type="EXTERNAL_TABLE",
                    partition_keys=[glue.CfnTable.ColumnProperty(name=PARTITION, type="string")],
                    parameters={
                        "projection.enabled": "true",
                        f"projection.{PARTITION}.type": "injected",
                    },
                    storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                        columns=[glue.CfnTable.ColumnProperty(name=name, type=kind) for name, kind in COLUMNS],
                        location=location,
                        input_format="org.apache.hadoop.hive.ql.io.SymlinkTextInputFormat",
                        output_format="org.apache.hadoop.hive.ql.io.IgnoreKeyTextOutputFormat",
                        serde_info=glue.CfnTable.SerdeInfoProperty(
                            serialization_library="org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
                        ),
                    ),
                ),
            )
            table.add_dependency(self.database)
            self.tables.append(table)
        self.workgroup_name = names.athena_workgroup
        self.workgroup = athena.CfnWorkGroup(
            self,
            "WorkGroup",
            name=self.workgroup_name,
            description="The capacity reconciler's queries over the S3 Inventory reports",
            recursive_delete_option=True,
            work_group_configuration=athena.CfnWorkGroup.WorkGroupConfigurationProperty(
                enforce_work_group_configuration=True,
                bytes_scanned_cutoff_per_query=BYTES_SCANNED_CUTOFF,
                publish_cloud_watch_metrics_enabled=True,
                result_configuration=athena.CfnWorkGroup.ResultConfigurationProperty(
                    output_location=f"s3://{inventory_bucket.bucket_name}/{RESULTS_PREFIX}",
                    encryption_configuration=athena.CfnWorkGroup.EncryptionConfigurationProperty(
                        encryption_option="SSE_S3"
                    ),
                ),
            ),
        )

    def allow_querying(self, role: iam.IRole) -> None:
        """Run the owner query: Athena in the workgroup, the catalog's table, the results it writes and reads back."""
        stack = cdk.Stack.of(self)
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=[
                    "athena:StartQueryExecution",
                    "athena:GetQueryExecution",
                    "athena:GetQueryResults",
                    "athena:StopQueryExecution",
                ],
                resources=[stack.format_arn(service="athena", resource="workgroup", resource_name=self.workgroup_name)],
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["glue:GetDatabase", "glue:GetTable", "glue:GetPartition", "glue:GetPartitions"],
                resources=[
                    stack.format_arn(service="glue", resource="catalog"),
                    stack.format_arn(service="glue", resource="database", resource_name=self.database_name),
                    stack.format_arn(service="glue", resource="table", resource_name=f"{self.database_name}/*"),
                ],
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:PutObject", "s3:GetBucketLocation"],
                resources=[
                    self.inventory_bucket.bucket_arn,
                    self.inventory_bucket.arn_for_objects(f"{RESULTS_PREFIX}*"),
                ],
            )
        )
        acknowledge(
            role,
            objects_finding(self.inventory_bucket, RESULTS_PREFIX),
            "Athena writes each query's results under a name of its own choosing, in the workgroup's results folder.",
        )
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:glue:<AWS::Region>:<AWS::AccountId>:table/{self.database_name}/*]",
            "The reconciler reads the inventory tables of this database only; there is one per source bucket.",
        )
