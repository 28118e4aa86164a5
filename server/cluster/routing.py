"""Sticky routing: a call naming a render worker goes to it; any other call to the least loaded one.

A pad session holds one long streaming call on its worker, so a worker's ongoing requests count its
sessions: "least loaded" is the fewest sessions (plus in-flight requests). Moves carry the
`worker=` keyword and must reach the worker that holds the session's stream. If that worker is
gone, the move goes anywhere and is answered "not here" (the session's stream has already failed
and told the client).
"""

from __future__ import annotations

from typing import List, Optional

from ray.serve.request_router import PendingRequest, RequestRouter, RunningReplica

WORKER_KEYWORD = "worker"


class StickyRouter(RequestRouter):
    # No FIFOMixin: with it, a replica chosen for one request may be handed to another pending
    # request, which would send a move to a worker that does not hold its session.

    async def choose_replicas(
        self,
        candidate_replicas: List[RunningReplica],
        pending_request: Optional[PendingRequest] = None,
    ) -> List[List[RunningReplica]]:
        target = pending_request.kwargs.get(WORKER_KEYWORD) if pending_request is not None else None
        if target is not None:
            for replica in candidate_replicas:
                if replica.replica_id.unique_id == target:
                    return [[replica]]
        # Every candidate: the router then takes the one with the shortest queue (there are few
        # render workers, one per GPU, so asking them all is cheap).
        return [list(candidate_replicas)]
