"""``GET /v1/rollouts/{name}/analysis``: a chain's rollout, as a canary controller reads it.

An Argo Rollouts ``web`` metric (``successCondition: result.phase == "successful"``) or a
Flagger webhook can gate a Kubernetes canary on the judging llmops does from user feedback.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llmops.rollouts import analysis, history, latest_for_chain
from llmops.serving.errors import HTTPError
from llmops.serving.state import GatewayState

__all__ = ["rollout_routes"]


def rollout_routes(gw: GatewayState) -> list[Route]:
    def read(name: str) -> dict[str, Any] | None:
        lakehouse = gw.rollouts.settings.lakehouse if gw.rollouts is not None else None
        if lakehouse is None:
            return None
        state = latest_for_chain(lakehouse, name)
        if state is None:
            return None
        judged = history(lakehouse, state.rollout_id).dropna(subset=["prod_requests"])
        last = judged.iloc[-1].to_dict() if len(judged) else None
        if last:
            last = {k: (None if v != v else v) for k, v in last.items()
                    if k.startswith(("prod_", "cand_", "diff"))}
            last = {k: (int(v) if k.endswith(("_requests", "_errors", "_rated", "_up"))
                        and v is not None else v) for k, v in last.items()}
        return analysis(state, last)

    async def rollout_analysis(request: Request) -> Response:
        key, slot = None, False
        try:
            # the versions, the split and each arm's evidence: an operator's or a canary
            # controller's (admin or metrics), not an application's
            key, slot = gw.admit(request, ("admin", "metrics"), "/v1/rollouts/{name}/analysis")
            name = request.path_params["name"]
            found = await run_in_threadpool(read, name)
            if found is None:
                raise HTTPError(404, f"chain '{name[:256]}' has no rollout", "rollout_not_found")
        except HTTPError as err:
            return err.response(gw.new_request_id())
        finally:
            gw.release(key, slot)
        return JSONResponse(found)

    return [Route("/v1/rollouts/{name}/analysis", rollout_analysis, methods=["GET"])]
