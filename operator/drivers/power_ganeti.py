"""Power through Ganeti's RAPI, for clouds whose nodes are Ganeti instances.

`args` (validated here, errors name `args.<field>`): the cluster's connection, as in the
top-level `ganeti` section -- `url`, `username`, `passwordFile`, `caFile`, `insecure`,
`timeout`, `requestTimeout` -- plus `instances`: `{fqdn: instance name}`, checked first;
otherwise a node is the instance named like its fqdn.

Verbs: power_off = instance shutdown with timeout 0 (Ganeti does not wait for a clean
stop: a hard power off), shutdown = instance shutdown with Ganeti's default timeout (the
guest gets its ACPI shutdown first), power_on = startup, reset = hard reboot (an instance
that is off is started). The state comes from the instance's oper_state; an instance whose
node is down or offline has no known state, which is an error, not "off". Each verb waits
for Ganeti's job (and its child jobs) and is idempotent.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from faultline.drivers.ganeti import GanetiError, GanetiNotFoundError, RapiClient
from faultline.drivers.power import (
    PowerBackend,
    PowerError,
    PowerState,
    PowerTarget,
    parse_args,
    register,
)
from faultline.models.config import PowerConfig
from faultline.models.ganeti import GanetiConnection


class GanetiPowerArgs(GanetiConnection):
    instances: dict[str, str] = Field(
        default_factory=dict, description="fqdn -> instance name, where they differ."
    )


@register
class GanetiPower(PowerBackend):
    driver = "ganeti"

    def __init__(self, config: PowerConfig) -> None:
        super().__init__(config)
        self.args = parse_args(GanetiPowerArgs, config)
        connection = GanetiConnection.model_validate(self.args.model_dump(exclude={"instances"}))
        self.rapi = RapiClient(connection)
        self.url = self.args.url

    def instance_name(self, node: PowerTarget) -> str:
        return (
            self.args.instances.get(node.fqdn)
            or self.args.instances.get(node.ip)
            or node.labels.get("ganeti.name")
            or node.fqdn
        )

    async def _instance(self, node: PowerTarget) -> tuple[str, dict[str, Any]]:
        name = self.instance_name(node)
        try:
            return name, await self.rapi.instance(name)
        except GanetiNotFoundError:
            raise PowerError(
                f"ganeti {self.url}: no instance {name!r} for {node.fqdn}; name the instance "
                f"in args.instances ({node.fqdn}: <instance name>)"
            ) from None
        except GanetiError as exc:
            raise PowerError(f"ganeti power of {node.fqdn}: {exc}") from None

    @staticmethod
    def _state(name: str, inst: dict[str, Any]) -> PowerState:
        oper = inst.get("oper_state")
        if oper is None:
            raise PowerError(
                f"ganeti: instance {name} has no known power state (status "
                f"{inst.get('status')}: its node is down or offline)"
            )
        return PowerState.ON if oper else PowerState.OFF

    async def _act(self, node: PowerTarget, verb: str, fn: Any) -> str:
        try:
            result: str = await fn()
        except GanetiError as exc:
            raise PowerError(f"ganeti {verb} of {node.fqdn}: {exc}") from None
        return result

    async def _wait_state(self, name: str, want: PowerState) -> None:
        inst = await self.rapi.instance(name)
        if self._state(name, inst) != want:
            raise PowerError(
                f"ganeti {self.url}: instance {name} still {inst.get('status')} after the job"
            )

    # -- verbs ---------------------------------------------------------------------------

    async def state(self, node: PowerTarget) -> PowerState:
        name, inst = await self._instance(node)
        return self._state(name, inst)

    async def _off(self, node: PowerTarget, timeout: int | None, verb: str) -> str:
        name, inst = await self._instance(node)
        if self._state(name, inst) == PowerState.OFF:
            return f"instance {name} already off"

        async def go() -> str:
            done = await self.rapi.instance_shutdown(name, timeout)
            await self._wait_state(name, PowerState.OFF)
            return f"instance {name}: {verb} (job {done.job_id}); off"

        return await self._act(node, verb, go)

    async def power_off(self, node: PowerTarget) -> str:
        return await self._off(node, 0, "shutdown --timeout 0")

    async def shutdown(self, node: PowerTarget) -> str:
        return await self._off(node, None, "shutdown")

    async def power_on(self, node: PowerTarget) -> str:
        name, inst = await self._instance(node)
        if self._state(name, inst) == PowerState.ON:
            return f"instance {name} already on"

        async def go() -> str:
            done = await self.rapi.instance_startup(name)
            await self._wait_state(name, PowerState.ON)
            return f"instance {name}: startup (job {done.job_id}); on"

        return await self._act(node, "startup", go)

    async def reset(self, node: PowerTarget) -> str:
        name, inst = await self._instance(node)
        was = self._state(name, inst)

        async def go() -> str:
            done = await self.rapi.instance_reboot(name, "hard")
            await self._wait_state(name, PowerState.ON)
            before = " (was off: started)" if was == PowerState.OFF else ""
            return f"instance {name}: hard reboot (job {done.job_id}){before}; on"

        return await self._act(node, "reboot", go)

    async def close(self) -> None:
        await self.rapi.close()
