"""Ranking a bucket's owners from the capacity counters (monitoring.capacity_top, the pure parts), and where the
shard count comes from (a stub Lambda client)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from monitoring.capacity import BUCKET_TOTAL, DEFAULT_SHARDS
from monitoring.capacity_top import (
    By,
    CapacityTopError,
    counter_shards,
    percent,
    rank,
    user_of,
)
from monitoring.s3_metrics import Totals
from pipeline.errors import ImgopsError
from pipeline.resources import ResourceNames

RUNAWAY = "0f9e8d7c-6b5a-4321-9876-543210fedcba"
QUIET = [f"1b4e28ba-2fa1-11d2-883f-00000000000{n}" for n in range(4)]
GB = 2**30


def uploads(sub: str) -> str:
    return f"user-uploads/{sub}/"


def counters(**extra: Totals) -> dict[str, Totals]:
    """A runaway user with few huge objects, four quiet ones with many small ones, the thumbnails' prefix."""
    owners = {uploads(RUNAWAY): Totals(40, 30 * GB)} | {
        uploads(sub): Totals(500 + n, (n + 1) * 10_000_000) for n, sub in enumerate(QUIET)
    }
    owners |= {"processed/": Totals(3, 1000), **extra}
    owners[BUCKET_TOTAL] = sum(owners.values(), Totals())
    return owners


def test_the_runaway_user_comes_first_by_bytes() -> None:
    top = rank(counters(), "b", by=By.BYTES, limit=3)

    assert [o.owner for o in top.owners] == [uploads(RUNAWAY), uploads(QUIET[3]), uploads(QUIET[2])]
    assert [o.rank for o in top.owners] == [1, 2, 3]
    first = top.owners[0]
    assert (first.user, first.label) == (RUNAWAY, RUNAWAY)
    assert first.view()["share_of_bytes"] == pytest.approx(30 * GB / top.total.size_bytes, abs=1e-6)
    assert top.rows()[0] == ("1", RUNAWAY, "40", "30.0 GB", "99.7%")


def test_by_objects_the_order_changes() -> None:
    top = rank(counters(), "b", by=By.OBJECTS, limit=10)

    assert [o.owner for o in top.owners] == [*(uploads(sub) for sub in reversed(QUIET)), uploads(RUNAWAY), "processed/"]
    assert top.rows()[0][4] == percent(503 / top.total.objects)


def test_the_rest_are_summed_and_the_bucket_total_is_its_own_counter() -> None:
    counted = counters()
    counted[BUCKET_TOTAL] += Totals(1, 1)  # the bucket's counter, not the owners' sum, is the total
    top = rank(counted, "b", limit=2)

    assert (top.other_owners, top.owner_count) == (4, 6)
    shown = sum((o.totals for o in top.owners), Totals())
    assert shown + top.others + Totals(1, 1) == top.total == counted[BUCKET_TOTAL]
    assert top.rows()[-1][:3] == ("", "4 other owners", f"{top.others.objects:,}")
    assert top.total_row()[1:3] == ("bucket total", f"{top.total.objects:,}")
    assert top.total_row()[4] == "100.0%"


def test_ties_go_by_the_other_measure_then_by_owner() -> None:
    top = rank({"b/": Totals(1, 100), "a/": Totals(1, 100), "c/": Totals(2, 100), "d/": Totals(9, 99)}, "x")

    assert [o.owner for o in top.owners] == ["c/", "a/", "b/", "d/"]
    assert top.total == Totals(13, 399)  # no bucket counter given: the owners' sum


def test_an_empty_bucket_has_no_owners_and_no_division_by_zero() -> None:
    top = rank({BUCKET_TOTAL: Totals()}, "b")

    assert (top.owners, top.other_owners) == ([], 0)
    assert top.total_row() == ("", "bucket total", "0", "0 bytes", "0.0%")
    assert top.headline() == "b: 0 objects, 0 bytes (0 bytes), 0 owners"


def test_owners_that_are_not_users_show_their_prefix() -> None:
    assert user_of(uploads(RUNAWAY)) == RUNAWAY
    assert user_of("user-uploads/") is None  # keys under user-uploads/ that are not <sub>/<name>
    assert user_of("processed/") is None
    assert user_of("(root)") is None
    top = rank({"user-uploads/": Totals(1, 5), "(root)": Totals(1, 1)}, "b")
    assert [o.label for o in top.owners] == ["user-uploads/", "(root)"]


def test_percent_shows_a_sliver_as_a_sliver() -> None:
    assert percent(0) == "0.0%"
    assert percent(0.0001) == "<0.1%"
    assert percent(0.0312) == "3.1%"
    assert percent(1) == "100.0%"


def test_view_is_the_json_shape() -> None:
    view = rank(counters(), "b", limit=1).view()

    assert set(view) == {"bucket", "by", "total", "owner_count", "owners", "others", "table", "shards", "shards_source"}
    assert view["by"] == "bytes"
    assert view["owners"][0] | {"share_of_bytes": 0, "share_of_objects": 0} == {
        "rank": 1,
        "owner": uploads(RUNAWAY),
        "user": RUNAWAY,
        "objects": 40,
        "bytes": 30 * GB,
        "bytes_readable": "30.0 GB",
        "share_of_bytes": 0,
        "share_of_objects": 0,
    }
    assert view["others"]["owners"] == 5


def test_a_limit_below_one_is_a_domain_error() -> None:
    with pytest.raises(CapacityTopError) as raised:
        rank(counters(), "b", limit=0)
    assert isinstance(raised.value, ImgopsError)


class StubLambda:
    def __init__(self, answer: dict[str, Any] | None = None, error: str | None = None) -> None:
        self.answer, self.error = answer or {}, error
        self.asked: list[str] = []

    def get_function_configuration(self, FunctionName: str) -> dict[str, Any]:  # noqa: N803 (boto3's spelling)
        self.asked.append(FunctionName)
        if self.error:
            raise ClientError({"Error": {"Code": self.error, "Message": "no"}}, "GetFunctionConfiguration")
        return self.answer


def test_shards_come_from_the_counter_functions_environment() -> None:
    client = StubLambda({"Environment": {"Variables": {"IMGOPS_CAPACITY_SHARDS": "16"}}})

    shards = counter_shards(client, ResourceNames("imgops").capacity_counter_function)

    assert client.asked == ["imgops-capacity-counter"]
    assert shards.count == 16
    assert "imgops-capacity-counter's IMGOPS_CAPACITY_SHARDS" in shards.source


@pytest.mark.parametrize(
    ("client", "said"),
    [
        (StubLambda(error="ResourceNotFoundException"), "no function imgops-capacity-counter"),
        (StubLambda(error="AccessDeniedException"), "unreadable (AccessDeniedException)"),
        (StubLambda({"Environment": {"Variables": {}}}), "sets no IMGOPS_CAPACITY_SHARDS"),
        (StubLambda({}), "sets no IMGOPS_CAPACITY_SHARDS"),
    ],
)
def test_otherwise_the_default_and_why(client: StubLambda, said: str) -> None:
    shards = counter_shards(client, "imgops-capacity-counter")

    assert shards.count == DEFAULT_SHARDS
    assert shards.source.startswith("default")
    assert said in shards.source


@pytest.mark.parametrize("value", ["0", "-3", "eight", "2.5"])
def test_a_shard_count_that_is_not_a_positive_integer_is_an_error(value: str) -> None:
    client = StubLambda({"Environment": {"Variables": {"IMGOPS_CAPACITY_SHARDS": value}}})

    with pytest.raises(CapacityTopError, match="not a positive integer"):
        counter_shards(client, "imgops-capacity-counter")
