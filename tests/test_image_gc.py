"""ECR hygiene with multi-platform images: what ``gc_untagged`` and ``cleanup`` keep.

``docker buildx`` pushes a multi-platform (or attested) image as a tagged image index whose
platform images and attestations are untagged; deleting "untagged images" breaks the tagged one
(docker/build-push-action#894, microsoft/fhir-server#5581). The images are pushed over HTTP into
moto's server as buildx pushes them, by the operator's clients (``admin``; tests/ecr_images.py
also says what moto does not model and which of ECR's rules the tests make it enforce); revieee
runs on its own clients (``aws``, its IAM role), and what it sends is checked on the wire with
:class:`~bot.aws.CallCounter`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from moto.ecr.models import ECRBackend

from bot.app import Runtime, build
from bot.aws import AwsClients, CallCounter
from bot.config import settings_from_mapping
from bot.engine import EngineError
from bot.naming import env_name
from bot.sandbox import Seeded, push_untagged, sandbox_config
from tests.conftest import MakeRig
from tests.ecr_images import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    enforce_ecr_rules,
    platform_manifest,
    push_index,
    push_referrer,
    put,
)
from tests.fake_slack import FakeSlack
from tests.test_slack import thread_replies

REPO = "shop-web"
CODEBUILD = {"image_source": "codebuild", "codebuild_project": "shop-web-images"}
KEPT = "that tagged or running images need (platform images, attestations, signatures)"


def _config(seeded: Seeded, tmp_path: Any) -> dict[str, Any]:
    config = sandbox_config(seeded, str(tmp_path / "revieee.db"))
    config["apps"]["shop"]["services"]["web"].update(CODEBUILD)
    return config


@pytest.fixture
def rt(seeded: Seeded, aws: AwsClients, tmp_path: Any) -> Iterator[Runtime]:
    """The runtime, with web built by CodeBuild into shop-web (so shop-web is collected)."""
    runtime = build(settings_from_mapping(_config(seeded, tmp_path), environ={}), clients=aws)
    yield runtime
    runtime.close()


def gc(rt: Runtime, dry_run: bool = False) -> tuple[list[str], list[str]]:
    lines: list[str] = []
    deleted = rt.core.executor.images.gc_untagged(
        dry_run=dry_run, report=lambda step, line: lines.append(f"{step}: {line}")
    )
    return deleted, lines


def untagged(admin: AwsClients) -> set[str]:
    answer = admin.ecr.list_images(repositoryName=REPO, filter={"tagStatus": "UNTAGGED"})
    return {str(i["imageDigest"]) for i in answer["imageIds"]}


def tags(admin: AwsClients) -> set[str]:
    details = admin.ecr.describe_images(repositoryName=REPO, maxResults=1000)["imageDetails"]
    return {t for d in details for t in d.get("imageTags", [])}


def sent_for_deletion(sent: CallCounter) -> list[str]:
    """Every digest or tag revieee asked ECR to delete, in order."""
    return [
        i.get("imageDigest") or i["imageTag"]
        for p in sent.params_of("ecr:BatchDeleteImage")
        for i in p["imageIds"]
    ]


def refs(*digests: str) -> set[str]:
    return {f"{REPO}@{d}" for d in digests}


# -- gc_untagged -------------------------------------------------------------------------------


def test_what_a_tagged_index_lists_survives_and_a_true_orphan_goes(
    rt: Runtime, aws: AwsClients, admin: AwsClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    enforce_ecr_rules(monkeypatch)
    multi = push_index(admin.ecr, REPO, "feature-checkout-c0ffee1")
    listed = push_index(admin.ecr, REPO, "legacy-c0ffee1", media_type=DOCKER_LIST)
    orphan = push_untagged(admin.ecr, REPO, "old-build")
    needed = {*multi.children, *multi.attestations, *listed.children}
    assert len(needed) == 6 and untagged(admin) == needed | {orphan}
    sent = CallCounter(aws)

    deleted, lines = gc(rt)

    assert deleted == [f"{REPO}@{orphan}"]
    assert untagged(admin) == needed
    assert {"feature-checkout-c0ffee1", "legacy-c0ffee1"} <= tags(admin)
    assert not needed & set(sent_for_deletion(sent))  # never even asked for
    # only the indexes were read (not the seeded single-platform images), in the index types
    gets = sent.params_of("ecr:BatchGetImage")
    assert {i["imageDigest"] for p in gets for i in p["imageIds"]} == {multi.digest, listed.digest}
    assert all({OCI_INDEX, DOCKER_LIST} <= set(p["acceptedMediaTypes"]) for p in gets)
    assert lines == [f"collecting untagged images: deleted 1 in {REPO}; kept 6 {KEPT}"]


def test_a_dry_run_says_what_it_would_delete_and_keep_and_deletes_nothing(
    rt: Runtime, aws: AwsClients, admin: AwsClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    enforce_ecr_rules(monkeypatch)
    multi = push_index(admin.ecr, REPO, "feature-checkout-c0ffee1")
    orphan = push_untagged(admin.ecr, REPO, "old-build")
    sent = CallCounter(aws)
    deleted, lines = gc(rt, dry_run=True)
    assert deleted == [f"{REPO}@{orphan}"]
    assert lines == [f"collecting untagged images: would delete 1 in {REPO}; kept 4 {KEPT}"]
    assert sent.params_of("ecr:BatchDeleteImage") == []
    assert untagged(admin) == {*multi.children, *multi.attestations, orphan}


def test_an_untagged_index_nothing_needs_goes_with_what_only_it_lists(
    rt: Runtime, aws: AwsClients, admin: AwsClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rebuild of the same commit: the same platform images, new attestations, a new index
    that takes the tag; the old index is left untagged (as ECR leaves it when a tag moves).

    Collecting the old index is safe: nothing tags it and no environment runs it, so no name
    revieee knows pulls it, and what only it lists (its attestations) is reachable through
    nothing else. The platform images it shares with the tagged index stay. Indexes are deleted
    before what they list: here ECR refuses to delete a manifest an index still lists."""
    enforce_ecr_rules(monkeypatch, refuse_listed=True)
    old = push_index(admin.ecr, REPO, None, content="c0ffee1", build="run-1")
    new = push_index(admin.ecr, REPO, "feature-checkout-c0ffee1", content="c0ffee1", build="run-2")
    assert old.children == new.children and not set(old.attestations) & set(new.attestations)
    sent = CallCounter(aws)

    deleted, lines = gc(rt)

    assert set(deleted) == refs(old.digest, *old.attestations)
    assert untagged(admin) == {*new.children, *new.attestations}
    order = sent_for_deletion(sent)
    assert not set(new.children) & set(order)  # asked for nothing shared (ECR may not refuse)
    assert order.index(old.digest) < min(order.index(a) for a in old.attestations)
    assert lines == [f"collecting untagged images: deleted 3 in {REPO}; kept 4 {KEPT}"]


def test_an_index_an_environment_runs_by_digest_keeps_what_it_lists(
    rt: Runtime, aws: AwsClients, admin: AwsClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Task definitions name images by digest: an index whose tag is gone may still run, and
    pulling it needs every platform image it lists."""
    enforce_ecr_rules(monkeypatch)
    running = push_index(admin.ecr, REPO, None, content="beef123")
    uri = admin.ecr.describe_repositories(repositoryNames=[REPO])["repositories"][0][
        "repositoryUri"
    ]
    store, env = rt.store, env_name("shop", "feature/pinned")
    store.upsert_env(env, app="shop", branch="feature/pinned", status="running", url="https://p")
    dep = store.start_deployment(env=env, app="shop", branch="feature/pinned", operation_id=0)
    image = [{"service": "web", "image": f"{uri}@{running.digest}", "tag": None}]
    store.update_deployment(dep, images=json.dumps(image))

    deleted, lines = gc(rt)

    assert deleted == []
    assert untagged(admin) == {running.digest, *running.children, *running.attestations}
    assert lines == [f"collecting untagged images: deleted 0 in {REPO}; kept 4 {KEPT}"]


def test_signatures_of_kept_images_stay_and_those_of_deleted_ones_go(
    rt: Runtime, aws: AwsClients, admin: AwsClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    enforce_ecr_rules(monkeypatch)
    multi = push_index(admin.ecr, REPO, "feature-checkout-c0ffee1", attestations=False)
    index_signature = push_referrer(admin.ecr, REPO, multi.digest)
    child_signature = push_referrer(admin.ecr, REPO, multi.children[0], name="child-signature")
    orphan = push_untagged(admin.ecr, REPO, "old-build")
    orphan_signature = push_referrer(admin.ecr, REPO, orphan)
    detail = admin.ecr.describe_images(
        repositoryName=REPO, imageIds=[{"imageDigest": orphan_signature}]
    )
    assert detail["imageDetails"][0]["subjectManifestDigest"] == orphan  # as ECR reports it

    deleted, _ = gc(rt)

    assert set(deleted) == refs(orphan, orphan_signature)
    assert untagged(admin) == {*multi.children, index_signature, child_signature}


def test_more_than_100_tagged_indexes_are_read_100_at_a_time(
    rt: Runtime, aws: AwsClients, admin: AwsClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    enforce_ecr_rules(monkeypatch)  # ECR refuses more than 100 image ids a call
    pushed = [
        push_index(
            admin.ecr, REPO, f"pr-{n}-c0ffee1", platforms=("linux/arm64",), attestations=False
        )
        for n in range(120)
    ]
    orphan = push_untagged(admin.ecr, REPO, "old-build")  # the last image: on the last page
    sent = CallCounter(aws)

    deleted, lines = gc(rt)

    assert deleted == [f"{REPO}@{orphan}"]
    assert untagged(admin) == {c for p in pushed for c in p.children}
    gets = sent.params_of("ecr:BatchGetImage")
    assert sorted(len(p["imageIds"]) for p in gets) == [20, 100]
    assert {i["imageDigest"] for p in gets for i in p["imageIds"]} == {p.digest for p in pushed}
    # 2 seeded + 240 + 1 images, 100 a page
    assert len(sent.params_of("ecr:DescribeImages")) == 3
    assert lines == [f"collecting untagged images: deleted 1 in {REPO}; kept 120 {KEPT}"]


def test_an_index_that_cannot_be_read_stops_the_collection_of_its_repository(
    rt: Runtime, aws: AwsClients, admin: AwsClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    enforce_ecr_rules(monkeypatch)
    multi = push_index(admin.ecr, REPO, "feature-checkout-c0ffee1")
    orphan = push_untagged(admin.ecr, REPO, "old-build")

    def kms_refuses(self: ECRBackend, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {
            "images": [],
            "failures": [
                {
                    "imageId": {"imageDigest": multi.digest},
                    "failureCode": "KmsError",
                    "failureReason": "The KMS key is disabled",
                }
            ],
        }

    monkeypatch.setattr(ECRBackend, "batch_get_image", kms_refuses)
    sent = CallCounter(aws)
    with pytest.raises(EngineError) as failed:
        gc(rt)
    assert str(failed.value).startswith(f"collecting untagged images in {REPO}: could not read")
    assert multi.digest in str(failed.value) and "KmsError" in str(failed.value)
    assert sent.params_of("ecr:BatchDeleteImage") == []
    assert untagged(admin) == {*multi.children, *multi.attestations, orphan}


# -- cleanup: deleting a tag revieee built -----------------------------------------------------


def test_a_stop_keeps_a_built_tag_whose_image_a_kept_index_lists(
    rt: Runtime, aws: AwsClients, admin: AwsClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deleting an image's last tag deletes the image: revieee built ``...-arm64`` for the
    environment, but someone's manifest list (tagged, kept) lists it."""
    enforce_ecr_rules(monkeypatch)
    env = env_name("shop", "feature/checkout")
    arm = platform_manifest(REPO, "c0ffee1", "linux/arm64", DOCKER_MANIFEST)
    arm_digest = put(admin.ecr, REPO, arm, "feature-checkout-c0ffee1-arm64")
    old = put(
        admin.ecr, REPO, platform_manifest(REPO, "0ld", "linux/arm64"), "feature-checkout-0ld"
    )
    manifest_list = {
        "schemaVersion": 2,
        "mediaType": DOCKER_LIST,
        "manifests": [
            {
                "mediaType": DOCKER_MANIFEST,
                "digest": arm_digest,
                "size": len(arm),
                "platform": {"architecture": "arm64", "os": "linux"},
            }
        ],
    }
    put(admin.ecr, REPO, json.dumps(manifest_list), "feature-checkout-c0ffee1")
    for n, tag in enumerate(("feature-checkout-c0ffee1-arm64", "feature-checkout-0ld")):
        rt.store.add_build(
            id=f"shop-web-images:{n}",
            ecr_repository=REPO,
            tag=tag,
            env=env,
            service="web",
            app="shop",
            status="SUCCEEDED",
        )
    lines: list[str] = []
    sent = CallCounter(aws)

    done = rt.core.executor.images.cleanup(
        rt.settings.apps["shop"], env, lambda s, m: lines.append(m)
    )

    assert (
        done
        == lines
        == [
            f"kept image {REPO}:feature-checkout-c0ffee1-arm64: {REPO}:feature-checkout-c0ffee1 "
            "needs it",
            f"deleted image tag(s) {REPO}:feature-checkout-0ld",
        ]
    )
    assert sent_for_deletion(sent) == ["feature-checkout-0ld"]
    assert "feature-checkout-c0ffee1-arm64" in tags(admin) and "feature-checkout-0ld" not in tags(
        admin
    )
    assert old not in untagged(admin)
    deleted_at = {b["tag"]: b["images_deleted_at"] for b in rt.store.builds(env=env)}
    assert not deleted_at["feature-checkout-c0ffee1-arm64"] and deleted_at["feature-checkout-0ld"]


# -- end to end: a stop collects, and the thread says what was kept -----------------------------


def test_a_stop_collects_untagged_images_and_the_thread_says_what_was_kept(
    make_rig: MakeRig,
    seeded: Seeded,
    admin: AwsClients,
    fake: FakeSlack,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
) -> None:
    enforce_ecr_rules(monkeypatch)
    shop = _config(seeded, tmp_path)["apps"]["shop"]
    rig = make_rig(app=shop, gc_untagged_images=True)
    multi = push_index(admin.ecr, REPO, "release-2024-06")
    orphan = push_untagged(admin.ecr, REPO, "old-build")
    env = env_name("shop", "main")
    rig.command("deploy main")  # main's image is in ECR already: nothing to build
    assert rig.wait_status(env, "running", "failed")["status"] == "running"
    rig.command(f"stop {env}")
    rig.wait_status(env, "stopped")
    rig.drain()

    assert untagged(admin) == {*multi.children, *multi.attestations}
    assert orphan not in untagged(admin)
    text = "\n".join(thread_replies(fake, rig.deploy_message(env)["ts"]))
    assert f"deleted 1 in {REPO}; kept 4 {KEPT}" in text
