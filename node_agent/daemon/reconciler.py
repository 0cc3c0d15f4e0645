"""The node agent's control loop: this node's Sandbox resources in, VMs and status out.

Three inputs mark a sandbox dirty: its watch (a server-side label selector on
`corral.dev/node=<node>`, so the API server sends only this node's sandboxes — kopf
would filter client-side), a poll of the local state store (a VM's main process exited,
a VM died), and timers the lifecycle asks for (back-off, maxDuration). A worker per dirty
sandbox, one at a time per sandbox, asks `lifecycle.decide()` and carries out the
answer. Writes carry the resourceVersion they were decided on, so a stale view loses
with a conflict and is decided again. Once the first list is in, VMs whose resource is
gone are garbage-collected; VMs whose resource is there are re-adopted as they are.

It is also the `SandboxDirectory` the HTTPS API and the metrics read.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from datetime import UTC, datetime
from typing import Any

import aiohttp
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import watch
from pydantic import ValidationError

from corral import BootError, CorralError, ImageError, InvalidConfig
from corral._kube import MERGE_PATCH
from corral.api import GROUP, NODE_AGENT_FINALIZER, NODE_LABEL, VERSION, Event, Sandbox
from corral.node_agent.daemon.directory import LocalSandbox
from corral.node_agent.daemon.lifecycle import (
    Action,
    Decision,
    History,
    boot_failed,
    decide,
    restarted,
)
from corral.node_agent.daemon.pull_secrets import registry_auths
from corral.node_agent.daemon.runtime import LocalRuntime, LocalVM

logger = logging.getLogger(__name__)
PLURAL = "sandboxes"
COMPONENT = "corral-node-agent"
_API_ERRORS = (k8s.ApiException, aiohttp.ClientError, OSError, TimeoutError)
WATCH_SECONDS = 300
"""How long one watch request lasts before it is renewed from its resourceVersion."""
RETRY_SECONDS = 2.0


class Reconciler:
    """Runs this node's sandboxes. `run()` until cancelled; VMs outlive it."""

    def __init__(
        self,
        api: k8s.ApiClient,
        runtime: LocalRuntime,
        node: str,
        poll_interval: float = 1.0,
        parallel_boots: int = 4,
    ) -> None:
        self._api = api
        self._objects = k8s.CustomObjectsApi(api)
        self._events = k8s.CoreV1Api(api)
        self._runtime = runtime
        self._node = node
        self._poll_interval = poll_interval
        self._boots = asyncio.Semaphore(parallel_boots)
        self._resources: dict[str, Sandbox] = {}
        self._vms: dict[str, LocalVM] = {}
        self._history: dict[str, History] = {}
        self._dirty: set[str] = set()
        self._busy: set[str] = set()
        self._wake = asyncio.Event()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self.synced = asyncio.Event()
        """Set once the first list of this node's sandboxes is in."""

    # SandboxDirectory

    def find(self, namespace: str, name: str) -> LocalSandbox | None:
        for uid, resource in self._resources.items():
            meta = resource.metadata
            if (meta.namespace, meta.name) == (namespace, name):
                return self._local(uid)
        return None

    def running(self) -> list[LocalSandbox]:
        found = (self._local(uid) for uid in list(self._resources))
        return [sandbox for sandbox in found if sandbox is not None]

    def _local(self, uid: str) -> LocalSandbox | None:
        vm, resource = self._vms.get(uid), self._resources.get(uid)
        if vm is None or resource is None or vm.observed.status != "running":
            return None
        meta = resource.metadata
        observed = vm.observed
        return LocalSandbox(
            meta.namespace,
            meta.name,
            uid,
            vm.socket,
            vm.qemu_pid,
            observed.accelerator,
            observed.boot_id,
        )

    # loops

    async def run(self) -> None:
        """Watch, poll and work until cancelled."""
        self._vms = self._runtime.observe()
        async with asyncio.TaskGroup() as group:
            group.create_task(self._watch())
            group.create_task(self._poll())
            group.create_task(self._work())

    async def _watch(self) -> None:
        selector = f"{NODE_LABEL}={self._node}"
        while True:
            try:
                listing = await self._objects.list_cluster_custom_object(
                    GROUP, VERSION, PLURAL, label_selector=selector
                )
                self._replace_all(listing["items"])
                version = listing["metadata"]["resourceVersion"]
                async with watch.Watch() as stream:
                    async for event in stream.stream(
                        self._objects.list_cluster_custom_object,
                        GROUP,
                        VERSION,
                        PLURAL,
                        label_selector=selector,
                        resource_version=version,
                        timeout_seconds=WATCH_SECONDS,
                    ):
                        self._apply_event(event["type"], event["object"])
            except _API_ERRORS as exc:
                logger.warning("watch of this node's sandboxes ended: %s; listing again", exc)
                await asyncio.sleep(RETRY_SECONDS)

    def _replace_all(self, items: list[dict[str, Any]]) -> None:
        fresh = {}
        for item in items:
            resource = _parse(item)
            if resource is not None:
                fresh[resource.metadata.uid] = resource
        gone = set(self._resources) - set(fresh)
        self._resources = fresh
        self._mark(*fresh, *gone, *self._vms)
        self.synced.set()

    def _apply_event(self, kind: str, obj: dict[str, Any]) -> None:
        if kind == "ERROR":
            raise k8s.ApiException(status=obj.get("code", 500), reason=obj.get("message", ""))
        resource = _parse(obj)
        if resource is None:
            return
        uid = resource.metadata.uid
        if kind == "DELETED":
            self._resources.pop(uid, None)
        elif _newer(resource, self._resources.get(uid)):
            self._resources[uid] = resource
        self._mark(uid)

    async def _poll(self) -> None:
        """Notice what changed in the VMs: a main process exited, a VM died or booted."""
        while True:
            await asyncio.sleep(self._poll_interval)
            vms = await asyncio.to_thread(self._runtime.observe)
            changed = [
                uid for uid in set(vms) | set(self._vms) if vms.get(uid) != self._vms.get(uid)
            ]
            self._vms = vms
            self._mark(*changed)

    def _mark(self, *uids: str) -> None:
        self._dirty.update(uids)
        self._wake.set()

    async def _work(self) -> None:
        async with asyncio.TaskGroup() as group:
            while True:
                await self._wake.wait()
                self._wake.clear()
                ready = self._dirty - self._busy
                self._dirty -= ready
                for uid in ready:
                    self._busy.add(uid)
                    group.create_task(self._reconcile_guarded(uid))

    async def _reconcile_guarded(self, uid: str) -> None:
        try:
            await self._reconcile(uid)
        except _API_ERRORS as exc:
            logger.warning("sandbox %s: %s; retrying", uid, exc)
            self._wake_later(uid, RETRY_SECONDS)
        except Exception:
            logger.exception("sandbox %s: reconciliation failed; retrying", uid)
            self._wake_later(uid, RETRY_SECONDS)
        finally:
            self._busy.discard(uid)
            if uid in self._dirty:
                self._wake.set()

    def _wake_later(self, uid: str, delay: float) -> None:
        old = self._timers.pop(uid, None)
        if old is not None:
            old.cancel()
        self._timers[uid] = asyncio.get_running_loop().call_later(delay, self._mark, uid)

    # one sandbox

    async def _reconcile(self, uid: str) -> None:
        resource = self._resources.get(uid)
        vm = self._vms.get(uid)
        if resource is None:
            if vm is not None and self.synced.is_set():
                logger.info("removing VM of sandbox %s: its resource is gone", uid)
                await self._runtime.stop(uid)
                self._refresh(uid)
            self._history.pop(uid, None)
            timer = self._timers.pop(uid, None)
            if timer is not None:
                timer.cancel()
            return
        history = self._history.get(uid, History())
        now = datetime.now(UTC)
        decision = decide(resource, vm.observed if vm else None, history, now)
        await self._write(resource, decision)
        if decision.wake_in is not None:
            self._wake_later(uid, max(decision.wake_in, 0.05))
        await self._act(resource, vm, history, decision.action)

    async def _act(
        self, resource: Sandbox, vm: LocalVM | None, history: History, action: Action
    ) -> None:
        uid = resource.metadata.uid
        if action is Action.NOTHING:
            return
        if action is Action.RELEASE:
            await self._runtime.stop(uid)
            self._refresh(uid)
            await self._release(resource)
            return
        if action in (Action.STOP, Action.RESTART):
            await self._runtime.stop(uid)
        elif action is Action.REMOVE:
            self._runtime.remove(uid)
        if action is Action.RESTART:
            self._history[uid] = restarted(history, vm.observed if vm else None, datetime.now(UTC))
        if action in (Action.BOOT, Action.RESTART):
            await self._boot(resource)
        self._refresh(uid)
        self._mark(uid)

    async def _boot(self, resource: Sandbox) -> None:
        uid = resource.metadata.uid
        resource = await self._hold(resource)
        async with self._boots:
            try:
                auths = await registry_auths(
                    self._api, resource.metadata.namespace, resource.spec.image_pull_secrets
                )
                await self._runtime.boot(resource, auths)
            except CorralError as exc:
                reason = _failure_reason(exc)
                message = exc.message if isinstance(exc, BootError) else str(exc)
                history = self._history.get(uid, History())
                history, decision = boot_failed(
                    resource, history, reason, message.splitlines()[0], datetime.now(UTC)
                )
                self._history[uid] = history
                self._runtime.remove(uid)
                await self._write(resource, decision)
                if decision.wake_in is not None:
                    self._wake_later(uid, decision.wake_in)
                return
        vm = self._refresh(uid)
        accelerator = vm.observed.accelerator if vm else "?"
        boot = vm.observed.boot_id if vm else "?"
        await self._post(resource, Event("Normal", "Booted", f"boot {boot} on {accelerator}"))

    def _refresh(self, uid: str) -> LocalVM | None:
        vm = self._runtime.observe().get(uid)
        if vm is None:
            self._vms.pop(uid, None)
        else:
            self._vms[uid] = vm
        return vm

    async def _hold(self, resource: Sandbox) -> Sandbox:
        """Make sure deleting the resource waits for this node agent to remove the VM."""
        meta = resource.metadata
        if NODE_AGENT_FINALIZER in meta.finalizers:
            return resource
        body = {
            "metadata": {
                "finalizers": [*meta.finalizers, NODE_AGENT_FINALIZER],
                "resourceVersion": meta.resource_version,
            }
        }
        updated = await self._objects.patch_namespaced_custom_object(
            GROUP, VERSION, meta.namespace, PLURAL, meta.name, body, **MERGE_PATCH
        )
        return self._remember(updated) or resource

    async def _release(self, resource: Sandbox) -> None:
        meta = resource.metadata
        if NODE_AGENT_FINALIZER not in meta.finalizers:
            return
        body = {
            "metadata": {
                "finalizers": [f for f in meta.finalizers if f != NODE_AGENT_FINALIZER],
                "resourceVersion": meta.resource_version,
            }
        }
        try:
            updated = await self._objects.patch_namespaced_custom_object(
                GROUP, VERSION, meta.namespace, PLURAL, meta.name, body, **MERGE_PATCH
            )
        except k8s.ApiException as exc:
            if exc.status != 404:
                raise
            return
        self._remember(updated)

    async def _write(self, resource: Sandbox, decision: Decision) -> None:
        meta = resource.metadata
        if decision.status is not None:
            body = {
                "metadata": {"resourceVersion": meta.resource_version},
                "status": decision.status,
            }
            try:
                updated = await self._objects.patch_namespaced_custom_object_status(
                    GROUP, VERSION, meta.namespace, PLURAL, meta.name, body, **MERGE_PATCH
                )
            except k8s.ApiException as exc:
                if exc.status not in (404, 409):
                    raise
                self._wake_later(meta.uid, RETRY_SECONDS / 4)
                return
            self._remember(updated)
        for event in decision.events:
            await self._post(resource, event)

    def _remember(self, obj: dict[str, Any]) -> Sandbox | None:
        """Keep a write's answer, so the next decision sees it before the watch brings it."""
        resource = _parse(obj)
        if resource is not None and _newer(resource, self._resources.get(resource.metadata.uid)):
            self._resources[resource.metadata.uid] = resource
        return resource

    async def _post(self, resource: Sandbox, event: Event) -> None:
        meta = resource.metadata
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body: Any = {  # the client sends a dict body as JSON as it is
            "metadata": {"name": f"{meta.name}.{secrets.token_hex(8)}"},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Sandbox",
                "namespace": meta.namespace,
                "name": meta.name,
                "uid": meta.uid,
                "resourceVersion": meta.resource_version,
            },
            "type": event.type,
            "reason": event.reason,
            "message": event.message,
            "source": {"component": COMPONENT, "host": self._node},
            "reportingComponent": COMPONENT,
            "reportingInstance": self._node,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self._events.create_namespaced_event(meta.namespace, body)
        except _API_ERRORS as exc:
            logger.warning("could not post event %s for %s: %s", event.reason, meta.name, exc)


def _failure_reason(exc: CorralError) -> str:
    if isinstance(exc, ImageError):
        return "ImagePullFailed"
    if isinstance(exc, InvalidConfig):
        return "InvalidSpec"
    return "BootFailed"


def _parse(obj: dict[str, Any]) -> Sandbox | None:
    try:
        return Sandbox.model_validate(obj)
    except ValidationError as exc:
        logger.warning("ignoring a Sandbox this node agent cannot read: %s", exc)
        return None


def _newer(resource: Sandbox, known: Sandbox | None) -> bool:
    """Whether `resource` is a later version than `known` (resourceVersions are integers
    on the API servers Corral runs against; unknown formats count as newer)."""
    if known is None:
        return True
    new, old = resource.metadata.resource_version, known.metadata.resource_version
    if new.isdigit() and old.isdigit():
        return int(new) >= int(old)
    return True
