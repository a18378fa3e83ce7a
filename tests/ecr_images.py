"""Multi-platform images in moto's ECR, pushed the way ``docker buildx`` pushes them, and the ECR
rules the image tests need moto's server to enforce.

``docker buildx build --platform linux/amd64,linux/arm64 --push`` (with provenance on, its default)
pushes one image manifest per platform and one attestation manifest per platform, all of them
untagged, then an image index that lists them, tagged. The attestation entries of the index
carry ``platform: unknown/unknown`` and the annotations ``vnd.docker.reference.type:
attestation-manifest`` and ``vnd.docker.reference.digest: <the platform image's digest>``
(https://docs.docker.com/build/metadata/attestations/attestation-storage/). ``push_index``
pushes exactly that, over HTTP with ``put_image``.

What moto 5.2.5 does with it (found by experiment against its server):

- ``put_image`` accepts an index, with ``imageManifestMediaType`` or without (it takes the
  manifest's ``mediaType``), and ``describe_images`` reports that ``imageManifestMediaType``
  (no ``artifactMediaType``, no ``subjectManifestDigest``). ``batch_get_image`` answers with the
  stored manifest, byte for byte, and its ``imageManifestMediaType``.

What moto does not model, and what is done about it here:

- Digests. Real ECR's digest is the sha256 of the manifest's bytes. moto hashes the layer
  digests of an image manifest and, for a manifest with no ``layers`` (every index), takes the
  sha256 of ``random.randint(0, 100)``: two indexes share a digest after a few pushes (30 pushes
  gave 24 digests). The helpers here always send ``imageDigest`` = sha256 of the bytes, which
  moto keeps as given (it never checks it; ECR answers ImageDigestDoesNotMatchException).
- ``batch_get_image`` ignores ``acceptedMediaTypes``, and ``batch_get_image`` and
  ``batch_delete_image`` take any number of image ids; ECR takes at most 100 a call
  (https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_BatchGetImage.html, and
  API_BatchDeleteImage.html: "Array Members: Minimum number of 1 item. Maximum number of 100
  items."). Enforced by :func:`enforce_ecr_rules`.
- ``describe_images`` ignores ``maxResults`` and ``filter`` and answers everything in one page;
  ECR answers at most ``maxResults`` (default 100) and a ``nextToken``
  (https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_DescribeImages.html).
  Enforced by :func:`enforce_ecr_rules` (``filter`` is still ignored).
- ``put_image`` accepts an index that lists a manifest the repository does not have; ECR answers
  ReferencedImagesNotFoundException ("The manifest list is referencing an image that does not
  exist", API_PutImage.html). Enforced by :func:`enforce_ecr_rules`.
- ``batch_delete_image`` deletes a manifest that an index still lists. ECR has a failure code for
  refusing that, ImageReferencedByManifestList (API_ImageFailure.html; aws/containers-roadmap#1567
  describes it for a manifest list), but whether it refuses for OCI indexes is not documented and
  the breakage reported in docker/build-push-action#894 says it does not always. So the rule is
  optional (``refuse_listed=True``): tests that check what revieee *sends* run without it (and
  look at the requests), the test of deletion order runs with it.
- Referrers (OCI 1.1 ``subject``: signatures, SBOMs): ECR reports ``subjectManifestDigest`` in
  DescribeImages; moto does not. :func:`enforce_ecr_rules` makes moto report it from the stored
  manifest's ``subject``.
- ``batch_delete_image`` of an untagged image answers an empty ``imageIds`` (ECR names the
  deleted image); revieee counts what did not fail instead.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, NamedTuple

import pytest
from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult
from moto.ecr.exceptions import InvalidParameterException
from moto.ecr.models import ECRBackend, Image
from moto.ecr.responses import ECRResponse

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
ECR_BATCH_LIMIT = 100


class PushedIndex(NamedTuple):
    digest: str  # the index
    children: list[str]  # the platform images
    attestations: list[str]


def digest_of(manifest: str) -> str:
    """What a registry calls a manifest: the sha256 of its bytes."""
    return "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()


def _sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _manifest(
    config_type: str, layer_type: str, seed: str, media_type: str = OCI_MANIFEST, **extra: Any
) -> str:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {"mediaType": config_type, "size": 1469, "digest": _sha(f"cfg:{seed}")},
            "layers": [{"mediaType": layer_type, "size": 3208, "digest": _sha(f"layer:{seed}")}],
            **extra,
        }
    )


def platform_manifest(
    repository: str, content: str, platform: str, media_type: str = OCI_MANIFEST
) -> str:
    if media_type == DOCKER_MANIFEST:
        types = (
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        )
    else:
        types = (
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        )
    return _manifest(*types, f"{repository}:{content}:{platform}", media_type)


def attestation_manifest(repository: str, build: str, platform: str) -> str:
    """A provenance attestation as buildkit writes it: an in-toto layer (its timestamps make
    every build's attestation, and so its index, new even when the image is the same)."""
    return _manifest(
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.in-toto+json",
        f"attestation:{repository}:{build}:{platform}",
    )


def put(ecr: Any, repository: str, manifest: str, tag: str | None = None) -> str:
    """Push one manifest with its real digest (tagged when ``tag``); skips one the repository
    has already (as buildx does: it asks the registry before pushing a blob or manifest)."""
    digest = digest_of(manifest)
    media_type = json.loads(manifest)["mediaType"]
    if tag is None and _exists(ecr, repository, digest):
        return digest
    fields: dict[str, Any] = {"imageTag": tag} if tag else {}
    ecr.put_image(
        repositoryName=repository,
        imageManifest=manifest,
        imageManifestMediaType=media_type,
        imageDigest=digest,
        **fields,
    )
    return digest


def _exists(ecr: Any, repository: str, digest: str) -> bool:
    try:
        ecr.describe_images(repositoryName=repository, imageIds=[{"imageDigest": digest}])
    except ecr.exceptions.ImageNotFoundException:
        return False
    return True


def push_index(
    ecr: Any,
    repository: str,
    tag: str | None,
    platforms: tuple[str, ...] = ("linux/amd64", "linux/arm64"),
    attestations: bool = True,
    *,
    content: str | None = None,
    build: str | None = None,
    media_type: str = OCI_INDEX,
) -> PushedIndex:
    """Push a multi-platform image as buildx does: each platform's image and attestation
    untagged, then the index (tagged with ``tag``; None leaves it untagged, like an index whose
    tag moved on). ``content`` names the image's contents (same content, same platform images),
    ``build`` the build (each makes new attestations); both default to the tag.
    ``media_type=DOCKER_LIST`` pushes a Docker manifest list (which has no attestations)."""
    content = content or tag or "untagged"
    build = build or content
    entries: list[dict[str, Any]] = []
    children: list[str] = []
    attested: list[str] = []
    child_type = OCI_MANIFEST if media_type == OCI_INDEX else DOCKER_MANIFEST
    for platform in platforms:
        os_name, arch = platform.split("/", 1)
        manifest = platform_manifest(repository, content, platform, child_type)
        child = put(ecr, repository, manifest)
        children.append(child)
        entries.append(
            {
                "mediaType": child_type,
                "digest": child,
                "size": len(manifest),
                "platform": {"architecture": arch, "os": os_name},
            }
        )
    if attestations and media_type == OCI_INDEX:
        for platform, child in zip(platforms, children, strict=True):
            manifest = attestation_manifest(repository, build, platform)
            attestation = put(ecr, repository, manifest)
            attested.append(attestation)
            entries.append(
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": attestation,
                    "size": len(manifest),
                    "annotations": {
                        "vnd.docker.reference.digest": child,
                        "vnd.docker.reference.type": "attestation-manifest",
                    },
                    "platform": {"architecture": "unknown", "os": "unknown"},
                }
            )
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": entries,
            **({"annotations": {"org.example.build": build}} if media_type == OCI_INDEX else {}),
        }
    )
    return PushedIndex(put(ecr, repository, index, tag), children, attested)


def push_referrer(ecr: Any, repository: str, subject: str, name: str = "signature") -> str:
    """Push an untagged artifact whose OCI ``subject`` is ``subject`` (a cosign or notation
    signature pushed through the referrers API); returns its digest."""
    manifest = _manifest(
        "application/vnd.oci.empty.v1+json",
        "application/vnd.dev.cosign.simplesigning.v1+json",
        f"{name}:{repository}:{subject}",
        artifactType="application/vnd.dev.cosign.artifact.sig.v1+json",
        subject={"mediaType": OCI_MANIFEST, "digest": subject, "size": 1000},
    )
    return put(ecr, repository, manifest)


# -- the rules ECR enforces and moto does not ---------------------------------------------------


class ReferencedImagesNotFound(ServiceException):
    code = "ReferencedImagesNotFoundException"


def _listed(image: Image) -> list[str]:
    manifest = json.loads(image.image_manifest)
    return [str(e["digest"]) for e in manifest.get("manifests", [])]


def _subject(image: Image) -> str | None:
    subject = json.loads(image.image_manifest).get("subject")
    return str(subject["digest"]) if isinstance(subject, dict) else None


def _at_most_a_batch(image_ids: list[dict[str, Any]] | None) -> None:
    if image_ids and len(image_ids) > ECR_BATCH_LIMIT:
        raise InvalidParameterException(
            f"Invalid parameter at 'imageIds' failed to satisfy constraint: 'Member must have "
            f"length less than or equal to {ECR_BATCH_LIMIT}' ({len(image_ids)} given)"
        )


def enforce_ecr_rules(monkeypatch: pytest.MonkeyPatch, refuse_listed: bool = False) -> None:
    """Make moto's ECR (its server runs in this process) refuse what ECR refuses; see the module
    docstring for each rule and its source."""
    get_image = ECRBackend.batch_get_image
    delete_image = ECRBackend.batch_delete_image
    put_image = ECRBackend.put_image
    describe = ECRResponse.describe_images

    def batch_get_image(
        self: ECRBackend,
        repository_name: str,
        registry_id: str | None = None,
        image_ids: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        _at_most_a_batch(image_ids)
        return get_image(self, repository_name, registry_id, image_ids)

    def batch_delete_image(
        self: ECRBackend,
        repository_name: str,
        registry_id: str | None = None,
        image_ids: list[dict[str, str]] | None = None,
    ) -> dict[str, Any]:
        _at_most_a_batch(image_ids)
        repository = self.repositories.get(repository_name)
        if not refuse_listed or repository is None:
            return delete_image(self, repository_name, registry_id, image_ids)
        answer: dict[str, Any] = {"imageIds": [], "failures": []}
        for image_id in image_ids or []:
            target = next(
                (
                    i
                    for i in repository.images
                    if i.get_image_digest() == image_id.get("imageDigest")
                    or (image_id.get("imageTag") and i.image_tags == [image_id["imageTag"]])
                ),
                None,
            )
            if target is not None and any(
                target.get_image_digest() in _listed(i)
                for i in repository.images
                if i is not target
            ):
                answer["failures"].append(
                    {
                        "imageId": image_id,
                        "failureCode": "ImageReferencedByManifestList",
                        "failureReason": "Requested image is referenced by a manifest list",
                    }
                )
                continue
            part = delete_image(self, repository_name, registry_id, [image_id])
            answer["imageIds"] += part["imageIds"]
            answer["failures"] += part["failures"]
        return answer

    def put(
        self: ECRBackend,
        repository_name: str,
        image_manifest: str,
        image_tag: str,
        image_manifest_mediatype: str | None = None,
        digest: str | None = None,
    ) -> Image:
        repository = self.repositories.get(repository_name)
        if repository is not None:
            present = {i.get_image_digest() for i in repository.images}
            missing = [
                str(e.get("digest"))
                for e in json.loads(image_manifest).get("manifests", [])
                if e.get("digest") not in present
            ]
            if missing:
                raise ReferencedImagesNotFound(
                    f"The manifest list is referencing images that do not exist: {missing}"
                )
        return put_image(
            self, repository_name, image_manifest, image_tag, image_manifest_mediatype, digest
        )

    def describe_images(self: ECRResponse) -> ActionResult:
        answer = describe(self)
        if self._get_param("imageIds"):
            return answer
        details = list(answer.result["imageDetails"])  # type: ignore[index]
        size = int(self._get_param("maxResults") or 100)
        start = int(self._get_param("nextToken") or 0)
        page: dict[str, Any] = {"imageDetails": details[start : start + size]}
        if start + size < len(details):
            page["nextToken"] = str(start + size)
        return ActionResult(page)

    monkeypatch.setattr(ECRBackend, "batch_get_image", batch_get_image)
    monkeypatch.setattr(ECRBackend, "batch_delete_image", batch_delete_image)
    monkeypatch.setattr(ECRBackend, "put_image", put)
    monkeypatch.setattr(ECRResponse, "describe_images", describe_images)
    monkeypatch.setattr(Image, "subject_manifest_digest", property(_subject), raising=False)
