"""What deploys leave behind in ECR, cleaned up: when an environment stops, the images built
only for it are deleted (``delete_images``), and untagged images in the repositories revieee
builds into can be garbage-collected. An image an environment still runs is never deleted,
nor one that a kept image needs: the untagged platform images and attestations an image index
lists (``docker buildx`` pushes every multi-platform or attested image that way), and
referrers such as signatures (``subjectManifestDigest``)."""

from __future__ import annotations

import json
import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from bot.aws import AwsClients, describe_error, error_code
from bot.config import AppConfig, Settings
from bot.engine.base import EngineError, Reporter
from bot.store import Store, now_iso

log = logging.getLogger("revieee.images")

CLEANUP_STEP = "cleaning up images"
GC_STEP = "collecting untagged images"
INDEX_MEDIA_TYPES = frozenset(
    {
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    }
)
# BatchGetImage answers only in a media type the caller accepts: indexes, and image manifests
# for an image whose DescribeImages entry does not say what it is
ACCEPTED_MANIFESTS = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.v1+json",
]
ECR_BATCH = 100  # image ids a BatchGetImage or BatchDeleteImage call takes at most


class ImageHygiene:
    """Deletes the images a stopped environment leaves, and untagged images."""

    def __init__(self, clients: AwsClients, settings: Settings, store: Store) -> None:
        self.aws = clients
        self.settings = settings
        self.store = store

    def cleanup(self, app: AppConfig | None, env: str, report: Reporter) -> list[str]:
        """Delete the tags revieee built for ``env`` (services with ``delete_images``), except
        those an environment still runs and those whose image a kept image index lists (deleting
        an image's last tag deletes the image). Never raises: a stop must not fail on its
        images."""
        done: list[str] = []
        if app is None:
            return done
        deletes = {s.name: s for s in app.services if s.deletes_images}
        builds = [
            b
            for b in self.store.builds(env=env)
            if b["service"] in deletes and b["status"] == "SUCCEEDED" and not b["images_deleted_at"]
        ]
        if not builds:
            return done
        in_use = self.store.images_in_use(except_env=env)
        by_repo: dict[str, list[dict[str, Any]]] = {}
        for build in builds:
            ref = f"{build['ecr_repository']}:{build['tag']}"
            if ref in in_use or (build.get("digest") and build["digest"] in in_use):
                line = f"kept image {ref}: another environment runs it"
                report(CLEANUP_STEP, line)
                done.append(line)
                continue
            by_repo.setdefault(build["ecr_repository"], []).append(build)
        for repo, repo_builds in by_repo.items():
            tags = sorted({b["tag"] for b in repo_builds})
            try:
                needed = self._needed_tags(repo, tags, in_use)
            except (EngineError, ClientError, BotoCoreError) as exc:
                why = str(exc) if isinstance(exc, EngineError) else describe_error(exc)
                line = f"could not delete images in {repo}: {why}"
                report(CLEANUP_STEP, line)
                done.append(line)
                continue
            for tag, holder in sorted(needed.items()):
                line = f"kept image {repo}:{tag}: {holder} needs it"
                report(CLEANUP_STEP, line)
                done.append(line)
            tags = [t for t in tags if t not in needed]
            repo_builds = [b for b in repo_builds if b["tag"] not in needed]
            if not tags:
                continue
            try:
                answer = self.aws.ecr.batch_delete_image(
                    repositoryName=repo, imageIds=[{"imageTag": t} for t in tags]
                )
            except (ClientError, BotoCoreError) as exc:
                line = f"could not delete images in {repo}: {describe_error(exc)}"
                report(CLEANUP_STEP, line)
                done.append(line)
                continue
            failed = {
                f["imageId"].get("imageTag"): f.get("failureCode")
                for f in answer.get("failures", [])
                if f.get("failureCode") != "ImageNotFound"
            }
            for build in repo_builds:
                if build["tag"] not in failed:
                    self.store.update_build(str(build["id"]), images_deleted_at=now_iso())
            gone = [t for t in tags if t not in failed]
            if gone:
                line = f"deleted image tag(s) {', '.join(f'{repo}:{t}' for t in gone)}"
                report(CLEANUP_STEP, line)
                done.append(line)
            for tag, code in failed.items():
                line = f"could not delete {repo}:{tag}: {code}"
                report(CLEANUP_STEP, line)
                done.append(line)
        return done

    def _needed_tags(self, repo: str, tags: list[str], in_use: set[str]) -> dict[str, str]:
        """Of ``tags`` (about to be deleted), those whose image would go with them although an
        image that stays needs it, each with that image's name."""
        step = f"reading the image indexes in {repo}"
        images = _repository_images(self.aws.ecr, repo)
        leaving = set(tags)
        staying = {
            str(d["imageDigest"])
            for d in images
            if set(d.get("imageTags", [])) - leaving or d["imageDigest"] in in_use
        }
        held = _held(self.aws.ecr, repo, images, staying, step)
        names = {str(d["imageDigest"]): d.get("imageTags", []) for d in images}
        needed: dict[str, str] = {}
        for detail in images:
            own = set(detail.get("imageTags", []))
            holder = held.get(str(detail["imageDigest"]))
            if holder is not None and own & leaving and own <= leaving:
                tagged = sorted(set(names.get(holder, [])) - leaving)
                name = f"{repo}:{tagged[0]}" if tagged else f"{repo}@{holder}"
                needed.update({t: name for t in own})
        return needed

    def managed_repositories(self) -> list[str]:
        """The ECR repositories revieee builds into (services with ``codebuild``)."""
        return sorted(
            {
                s.ecr_repository
                for app in self.settings.apps.values()
                for s in app.services
                if s.image_source == "codebuild" and s.ecr_repository
            }
        )

    def gc_untagged(self, dry_run: bool = False, report: Reporter | None = None) -> list[str]:
        """Delete untagged images in the managed repositories, except those an environment
        still runs (task definitions refer to images by digest) and those a tagged or running
        image needs: what its image index lists (the untagged platform images and attestations
        of a multi-platform or attested build), and its referrers (signatures). An untagged
        index nothing needs goes with what only it lists. Returns what was (or, with
        ``dry_run``, would be) deleted, as ``repo@digest``."""
        in_use = self.store.images_in_use()
        deleted: list[str] = []
        for repo in self.managed_repositories():
            step = f"collecting untagged images in {repo}"
            try:
                images = _repository_images(self.aws.ecr, repo)
                roots = {
                    str(d["imageDigest"])
                    for d in images
                    if d.get("imageTags") or d["imageDigest"] in in_use
                }
                held = _held(self.aws.ecr, repo, images, roots, step)
                untagged = [d for d in images if str(d["imageDigest"]) not in roots]
                doomed = [d for d in untagged if str(d["imageDigest"]) not in held]
                kept = len(untagged) - len(doomed)
                # indexes first: ECR may refuse to delete a manifest that an index still lists
                groups = [
                    [str(d["imageDigest"]) for d in doomed if _may_be_index(d)],
                    [str(d["imageDigest"]) for d in doomed if not _may_be_index(d)],
                ]
                gone: list[str] = [d for g in groups for d in g]
                failed: dict[str, str] = {}
                if not dry_run:
                    gone, failed = self._delete_digests(repo, groups)
            except ClientError as exc:
                if error_code(exc) == "RepositoryNotFoundException":
                    continue
                raise EngineError(step, describe_error(exc)) from exc
            except BotoCoreError as exc:
                raise EngineError(step, describe_error(exc)) from exc
            deleted += [f"{repo}@{d}" for d in gone]
            # ECR's own guard, should an index that lists it appear after the listing
            kept += sum(1 for code in failed.values() if code == "ImageReferencedByManifestList")
            refused = sorted({c for c in failed.values() if c != "ImageReferencedByManifestList"})
            parts = []
            if gone or kept:
                parts.append(f"{'would delete' if dry_run else 'deleted'} {len(gone)} in {repo}")
            if kept:
                parts.append(
                    f"kept {kept} that tagged or running images need "
                    "(platform images, attestations, signatures)"
                )
            for code in refused:
                count = sum(1 for c in failed.values() if c == code)
                parts.append(f"could not delete {count}: {code}")
            if parts:
                line = "; ".join(parts)
                log.info("%s: %s", GC_STEP, line)
                if report is not None:
                    report(GC_STEP, line)
        return deleted

    def _delete_digests(
        self, repo: str, groups: list[list[str]]
    ) -> tuple[list[str], dict[str, str]]:
        """Delete by digest, group after group, at most ``ECR_BATCH`` a call; returns what went
        and the failure code of what did not (an image already gone is neither)."""
        gone: list[str] = []
        failed: dict[str, str] = {}
        for group in groups:
            for start in range(0, len(group), ECR_BATCH):
                chunk = group[start : start + ECR_BATCH]
                answer = self.aws.ecr.batch_delete_image(
                    repositoryName=repo, imageIds=[{"imageDigest": d} for d in chunk]
                )
                codes = {
                    str(f.get("imageId", {}).get("imageDigest")): str(f.get("failureCode"))
                    for f in answer.get("failures", [])
                }
                for digest in chunk:
                    code = codes.get(digest)
                    if code is None:
                        gone.append(digest)
                    elif code != "ImageNotFound":
                        failed[digest] = code
        return gone, failed


def _repository_images(ecr: Any, repo: str) -> list[dict[str, Any]]:
    """Every image of the repository, tagged or not, as DescribeImages details."""
    return [
        detail
        for page in ecr.get_paginator("describe_images").paginate(repositoryName=repo)
        for detail in page["imageDetails"]
    ]


def _may_be_index(detail: dict[str, Any] | None) -> bool:
    """An image index or manifest list, or an image DescribeImages does not say the type of."""
    media_type = (detail or {}).get("imageManifestMediaType")
    return not media_type or media_type in INDEX_MEDIA_TYPES


def _held(
    ecr: Any, repo: str, images: list[dict[str, Any]], roots: set[str], step: str
) -> dict[str, str]:
    """The images ``roots`` need besides themselves, each with the digest of the image that
    holds it: what an image index lists (platform images, attestations, nested indexes) and the
    referrers of an image (``subjectManifestDigest``: signatures, SBOMs), followed through
    whatever is held in turn. Only indexes are read (BatchGetImage, ``ECR_BATCH`` at a time).
    Raises :class:`EngineError` when an index cannot be read: nothing is safe to delete then."""
    details = {str(d["imageDigest"]): d for d in images}
    referrers: dict[str, list[str]] = {}
    for detail in images:
        if detail.get("subjectManifestDigest"):
            referrers.setdefault(str(detail["subjectManifestDigest"]), []).append(
                str(detail["imageDigest"])
            )
    held: dict[str, str] = {}
    frontier = sorted(d for d in roots if d in details)
    while frontier:
        reached = [(r, d) for d in frontier for r in referrers.get(d, [])]
        indexes = [d for d in frontier if _may_be_index(details[d])]
        for start in range(0, len(indexes), ECR_BATCH):
            reached += _listed(ecr, repo, indexes[start : start + ECR_BATCH], step)
        frontier = []
        for digest, holder in reached:
            if digest not in roots and digest not in held:
                held[digest] = holder
                if digest in details:
                    frontier.append(digest)
    return held


def _listed(ecr: Any, repo: str, digests: list[str], step: str) -> list[tuple[str, str]]:
    """``(listed digest, index digest)`` for every manifest the indexes ``digests`` list."""
    answer = ecr.batch_get_image(
        repositoryName=repo,
        imageIds=[{"imageDigest": d} for d in digests],
        acceptedMediaTypes=ACCEPTED_MANIFESTS,
    )
    for failure in answer.get("failures", []):
        if failure.get("failureCode") != "ImageNotFound":  # gone since listed: holds nothing
            digest = failure.get("imageId", {}).get("imageDigest", "?")
            raise EngineError(
                step,
                f"could not read image {repo}@{digest}: {failure.get('failureCode')} "
                f"{failure.get('failureReason', '')}".rstrip(),
            )
    pairs: list[tuple[str, str]] = []
    for image in answer.get("images", []):
        index = str(image["imageId"]["imageDigest"])
        try:
            manifest = json.loads(image.get("imageManifest") or "")
        except ValueError as exc:
            raise EngineError(step, f"the manifest of {repo}@{index} is not JSON") from exc
        entries = manifest.get("manifests") if isinstance(manifest, dict) else None
        pairs += [
            (str(e["digest"]), index)
            for e in entries or []
            if isinstance(e, dict) and e.get("digest")
        ]
    return pairs
