"""The Study servicer: translation only. Reading status of studies."""

from __future__ import annotations

import hashlib

from medcompute.proto.v1 import studies_pb2, studies_pb2_grpc
from medcompute.server.api.guard import Guard, rpc

__all__ = ["StudyServicer"]


def _object(request, uid: str) -> str:
    # The audit names an image of the study, or a digest of the UID (never the UID).
    return request.image_id or "study:" + hashlib.sha256(uid.encode()).hexdigest()[:16]


class StudyServicer(studies_pb2_grpc.StudyServiceServicer):
    def __init__(self, store, guard: Guard):
        self.store = store                # ImageStore
        self.guard = guard

    @rpc("study.set_status", ("store", "receive"))
    async def SetStudyStatus(self, request, context, call):
        who = call.principal.subscriber
        uid = await self.store.study_of(who, request.image_id, request.study_instance_uid)
        call.object_id = _object(request, uid)
        studies = self.store.studies
        before = await studies.set(who, uid, request.status, by=who)
        call.detail = f"status {before} -> {request.status}"
        return studies_pb2.SetStudyStatusResponse(
            status=request.status, previous_status=before,
            allowed_versions=studies.rules.allowed(request.status))

    @rpc("study.get_status", ("store", "receive"))
    async def GetStudyStatus(self, request, context, call):
        who = call.principal.subscriber
        uid = await self.store.study_of(who, request.image_id, request.study_instance_uid)
        call.object_id = _object(request, uid)
        studies = self.store.studies
        status, at, by = await studies.get(who, uid)
        return studies_pb2.GetStudyStatusResponse(
            status=status, changed_at=at, changed_by=by,
            allowed_versions=studies.rules.allowed(status), statuses=studies.rules.statuses)
