"""Planning: which commit and image each service of an environment runs."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from bot.config import ServiceConfig, render
from bot.engine.base import EngineBase, EngineError, ImageMissing, Reporter, aws_step, noop
from bot.engine.model import CommitResolver, EnvSpec, ServicePlan
from bot.naming import image_tag_part


def _tag_pattern(template: str, **values: str) -> re.Pattern[str]:
    """A regex matching tags rendered from ``template`` with any commit in place of the sha."""
    regex, seen = [], set()
    for index, piece in enumerate(re.split(r"(\{[a-z0-9_]+\})", template)):
        name = piece[1:-1] if index % 2 else None  # odd pieces are the placeholders
        if name in ("sha", "sha7"):
            hexes = "[0-9a-f]{40}" if name == "sha" else "[0-9a-f]{7}"
            regex.append(hexes if name in seen else f"(?P<{name}>{hexes})")
            seen.add(name)
        else:
            regex.append(re.escape(values[name] if name else piece))
    return re.compile("".join(regex))


def _resolve(commits: CommitResolver, repository: str, branch: str) -> str | None:
    """The branch's head through ``commits``; whatever it raises (GitHub is down...) fails the
    step that needed it."""
    try:
        return commits.resolve(repository, branch)
    except Exception as exc:
        raise EngineError(f"resolving commit of {repository}@{branch}", str(exc)) from exc


class Planning(EngineBase):
    def plan(
        self,
        spec: EnvSpec,
        sha: str | None = None,
        commits: CommitResolver | None = None,
        report: Reporter = noop,
        sha_repository: str | None = None,
    ) -> list[ServicePlan]:
        """Resolve commit and image for every service; repositories without the branch fall
        back to their default branch. Raises :class:`ImageMissing` naming repository and tag.

        A commit belongs to one repository: ``sha`` applies to the services built from
        ``sha_repository`` (default: the public service's); the others take their branch's
        head (or newest image)."""
        plans: list[ServicePlan] = []
        misses: list[ImageMissing] = []
        images: dict[str, list[dict[str, Any]]] = {}  # one listing per repository per plan
        owner = sha_repository or spec.app.public_service.repository
        for svc in spec.app.services:
            svc_sha = sha if svc.repository == owner else None
            plan, miss = self._plan_service(spec, svc, svc_sha, commits, images)
            if miss is not None:
                misses.append(miss)
            plans.append(plan)
            report("resolving image", plan.describe())
        if all(p.fallback for p in plans) and misses:
            if len(misses) == 1:
                raise misses[0]
            raise ImageMissing("resolving image", "; ".join(m.message for m in misses))
        return plans

    def _plan_service(
        self,
        spec: EnvSpec,
        svc: ServiceConfig,
        sha: str | None,
        commits: CommitResolver | None,
        images: dict[str, list[dict[str, Any]]],
    ) -> tuple[ServicePlan, ImageMissing | None]:
        branch, fallback = spec.branch, False
        # A commit given for the service's repository is deployed as that commit; its branch is
        # not looked up (a fork's ``owner:branch`` is no branch of ours: GitHub answers 404).
        if commits is not None and sha is None:
            resolved = _resolve(commits, svc.repository, branch)
            if resolved is None and branch != svc.default_branch:
                branch, fallback = svc.default_branch, True
                resolved = _resolve(commits, svc.repository, branch)
            if resolved is None:
                raise EngineError(
                    f"resolving commit of {svc.repository}",
                    f"neither branch {spec.branch!r} nor {svc.default_branch!r} exists",
                )
            sha = resolved
        source = svc.image_source
        try:
            image, tag, found_sha = self._find_image(spec, svc, branch, sha, images)
            return ServicePlan(svc.name, branch, found_sha, image, tag, fallback, source), None
        except ImageMissing as miss:
            if source != "existing" and miss.tag is not None:
                uri = self._repository_uri(svc.ecr_repository or "", miss.step)
                return ServicePlan(
                    svc.name, branch, sha, uri, miss.tag, fallback, source, True
                ), None
            hint = (
                "; to build or wait for it revieee needs the commit: pass --sha, or set "
                "GITHUB_TOKEN so branches resolve to commits"
                if source != "existing"
                else ""
            )
            if hint:
                miss = ImageMissing(miss.step, miss.message + hint)
            if commits is not None or fallback or branch == svc.default_branch:
                raise miss
            branch = svc.default_branch
            try:
                image, tag, found_sha = self._find_image(spec, svc, branch, None, images)
            except ImageMissing as again:
                if hint:
                    raise ImageMissing(again.step, again.message + hint) from again
                raise
            return ServicePlan(svc.name, branch, found_sha, image, tag, True, source), miss

    def _find_image(
        self,
        spec: EnvSpec,
        svc: ServiceConfig,
        branch: str,
        sha: str | None,
        images: dict[str, list[dict[str, Any]]],
    ) -> tuple[str, str | None, str | None]:
        values = {
            "branch": image_tag_part(branch),
            "env": spec.env,
            "app": spec.app.name,
            "service": svc.name,
        }
        if svc.image:
            if svc.needs_sha and not sha:
                raise EngineError(
                    f"resolving image of {svc.name}",
                    f"the image template {svc.image!r} needs a commit: pass --sha",
                )
            return render(svc.image, sha=sha or "", sha7=(sha or "")[:7], **values), None, sha
        repo = svc.ecr_repository or ""
        step = f"resolving image of {svc.name} in ECR repository {repo}"
        uri = self._repository_uri(repo, step)
        if sha or not svc.needs_sha:
            tag = render(svc.tag, sha=sha or "", sha7=(sha or "")[:7], **values)
            digest = self._digest(repo, tag, step)
            if digest is None:
                raise ImageMissing(
                    step,
                    f"no image {repo}:{tag} (build and push it, or check the tag "
                    f"template): docker push {uri}:{tag}",
                    tag,
                )
            return f"{uri}@{digest}", tag, sha
        pattern = _tag_pattern(svc.tag, **values)
        newest: tuple[datetime, str, str, str | None] | None = None
        if repo not in images:
            images[repo] = self._images(repo, step)
        for detail in images[repo]:
            for tag in detail.get("imageTags", []):
                match = pattern.fullmatch(tag)
                if match and (newest is None or detail["imagePushedAt"] > newest[0]):
                    groups = match.groupdict()
                    newest = (
                        detail["imagePushedAt"],
                        tag,
                        detail["imageDigest"],
                        groups.get("sha") or groups.get("sha7"),
                    )
        if newest is None:
            wanted = render(svc.tag, sha="<sha>", sha7="<sha7>", **values)
            raise ImageMissing(step, f"no image {repo}:{wanted} for any commit")
        return f"{uri}@{newest[2]}", newest[1], newest[3]

    def find_tag(self, svc: ServiceConfig, tag: str) -> str | None:
        """``uri@digest`` of ``tag`` in the service's ECR repository, None while it is not there."""
        repo = svc.ecr_repository or ""
        step = f"looking for {repo}:{tag}"
        uri = self._repository_uri(repo, step)
        digest = self._digest(repo, tag, step)
        return None if digest is None else f"{uri}@{digest}"

    def _digest(self, repo: str, tag: str, step: str) -> str | None:
        """The digest of ``repo:tag``, None when ECR has no such image."""
        with aws_step(step, ok_codes=("ImageNotFoundException",)) as refused:
            found = self.aws.ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": tag}])
        return None if refused.code else str(found["imageDetails"][0]["imageDigest"])

    def repository_uri(self, repo: str) -> str:
        return self._repository_uri(repo, f"describing ECR repository {repo}")

    def _repository_uri(self, repo: str, step: str) -> str:
        if repo not in self._repository_uris:  # a repository's URI never changes
            with aws_step(step, ok_codes=("RepositoryNotFoundException",)) as refused:
                found = self.aws.ecr.describe_repositories(repositoryNames=[repo])
            if refused.code:
                raise EngineError(step, "the ECR repository does not exist")
            self._repository_uris[repo] = str(found["repositories"][0]["repositoryUri"])
        return self._repository_uris[repo]

    def _images(self, repo: str, step: str) -> list[dict[str, Any]]:
        paginator = self.aws.ecr.get_paginator("describe_images")
        with aws_step(step):
            return [
                detail
                for page in paginator.paginate(repositoryName=repo, filter={"tagStatus": "TAGGED"})
                for detail in page["imageDetails"]
            ]
        raise AssertionError("unreachable")  # pragma: no cover
