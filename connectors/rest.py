"""A small client of the Kafka Connect REST API. Every failure becomes one line:
unreachable -> ServiceUnreachableError; a refused config or a FAILED connector/task -> ConnectorError
with the root cause taken from the Java trace."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx

from replicator.errors import ConnectorError, ServiceUnreachableError

_CAUSED_BY = re.compile(r"^Caused by: (?:[\w$]+\.)*([\w$]+(?:Exception|Error))(?::\s*(.*))?$", re.MULTILINE)
_FIRST = re.compile(r"^(?:[\w$]+\.)*([\w$]+(?:Exception|Error))(?::\s*(.*))?$")


def root_cause(trace: str | None) -> str:
    """The innermost 'Caused by' of a Java stack trace, as 'Class: message'."""
    if not trace:
        return "no trace given"
    causes = _CAUSED_BY.findall(trace)
    if causes:
        cls, message = causes[-1]
    else:
        first = trace.strip().splitlines()[0]
        match = _FIRST.match(first)
        if not match:
            return " ".join(first.split())
        cls, message = match.group(1), match.group(2) or ""
    message = " ".join(message.split())
    return f"{cls}: {message}" if message else cls


class KafkaConnect:
    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            reason = str(exc) or type(exc).__name__
            raise ServiceUnreachableError(
                f"cannot reach Kafka Connect at {self.url}: {reason}",
                hint="check connect.url in the config and that Kafka Connect is running",
            ) from None

    @staticmethod
    def _message(response: httpx.Response) -> str:
        try:
            body = response.json()
            text = str(body.get("message", body)) if isinstance(body, dict) else str(body)
        except ValueError:
            text = response.text or response.reason_phrase
        # Validation errors come as a header line plus one line per problem: keep the problems.
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if len(lines) > 1 and "contains the following" in lines[0]:
            lines = lines[1:]
        return "; ".join(lines)[:600]

    def put_config(self, name: str, config: dict[str, str]) -> None:
        response = self._call("PUT", f"/connectors/{name}/config", json=config)
        if response.status_code not in (200, 201):
            raise ConnectorError(
                f"Kafka Connect refused connector {name} (HTTP {response.status_code}): {self._message(response)}",
                hint="fix the source settings in the config and apply again",
            )

    def config(self, name: str) -> dict[str, str] | None:
        response = self._call("GET", f"/connectors/{name}/config")
        if response.status_code == 404:
            return None
        self._raise_for(response, name)
        return dict(response.json())

    def status(self, name: str) -> dict[str, Any] | None:
        response = self._call("GET", f"/connectors/{name}/status")
        if response.status_code == 404:
            return None
        self._raise_for(response, name)
        return dict(response.json())

    def version(self) -> str:
        """The Kafka Connect worker's version (GET /)."""
        response = self._call("GET", "/")
        self._raise_for(response, "(root)")
        body = response.json()
        return str(body.get("version", "?")) if isinstance(body, dict) else "?"

    def plugins(self) -> dict[str, str]:
        """Installed connector plugins: class name -> version (GET /connector-plugins)."""
        response = self._call("GET", "/connector-plugins")
        self._raise_for(response, "(plugins)")
        return {str(p.get("class")): str(p.get("version", "?")) for p in response.json() if isinstance(p, dict)}

    def configs(self) -> dict[str, dict[str, str]]:
        """Every registered connector's config, by name (GET /connectors?expand=info)."""
        response = self._call("GET", "/connectors", params={"expand": "info"})
        self._raise_for(response, "(list)")
        body = response.json()
        found: dict[str, dict[str, str]] = {}
        for name, entry in (body.items() if isinstance(body, dict) else ()):
            config = entry.get("info", {}).get("config") if isinstance(entry, dict) else None
            if isinstance(config, dict):
                found[str(name)] = {str(k): str(v) for k, v in config.items()}
        return found

    def connectors(self) -> list[str]:
        response = self._call("GET", "/connectors")
        self._raise_for(response, "(list)")
        return sorted(response.json())

    def delete(self, name: str, timeout_s: float = 30.0) -> bool:
        """Stop the connector, forget its source offsets, then delete it (False: it did not exist).

        Kafka Connect keeps a deleted connector's offsets and hands them to a new connector of the
        same name, which then resumes at a stale position (seen: a MySQL connector skipping the
        first row after the old position). Offsets can only be reset while STOPPED (KIP-875)."""
        response = self._call("PUT", f"/connectors/{name}/stop")
        if response.status_code == 404:
            return False
        self._raise_for(response, name)
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.status(name)
            if status is None or status.get("connector", {}).get("state") == "STOPPED":
                break
            if time.monotonic() > deadline:
                raise ConnectorError(f"connector {name} did not stop within {timeout_s:.0f} s",
                                     hint="see the Kafka Connect log, then run delete again")
            time.sleep(0.2)
        self._raise_for(self._call("DELETE", f"/connectors/{name}/offsets"), name)
        response = self._call("DELETE", f"/connectors/{name}")
        if response.status_code != 404:
            self._raise_for(response, name)
        return True

    def restart(self, name: str) -> None:
        response = self._call("POST", f"/connectors/{name}/restart", params={"includeTasks": "true"})
        self._raise_for(response, name)

    def _raise_for(self, response: httpx.Response, name: str) -> None:
        if response.status_code >= 400:
            raise ConnectorError(
                f"Kafka Connect answered HTTP {response.status_code} for connector {name}: "
                f"{self._message(response)}"
            )

    def wait_running(self, name: str, timeout_s: float) -> dict[str, Any]:
        """Wait until the connector and all its tasks are RUNNING; a FAILED one raises at once."""
        deadline = time.monotonic() + timeout_s
        last = "no status yet"
        while True:
            status = self.status(name)
            if status is not None:
                failure = failed_part(status)
                if failure is not None:
                    raise ConnectorError(
                        f"connector {name} {failure}",
                        hint=f"fix the cause, then apply again (details: GET {self.url}/connectors/{name}/status)",
                    )
                tasks = status.get("tasks", [])
                state = status.get("connector", {}).get("state")
                if state == "RUNNING" and tasks and all(t.get("state") == "RUNNING" for t in tasks):
                    return status
                last = f"connector {state}, tasks {[t.get('state') for t in tasks]}"
            if time.monotonic() > deadline:
                raise ConnectorError(f"connector {name} not RUNNING after {timeout_s:.0f} s ({last})")
            time.sleep(0.5)


def failed_part(status: dict[str, Any]) -> str | None:
    """'FAILED: cause' for the connector or its first failed task, else None."""
    connector = status.get("connector", {})
    if connector.get("state") == "FAILED":
        return f"FAILED: {root_cause(connector.get('trace'))}"
    for task in status.get("tasks", []):
        if task.get("state") == "FAILED":
            return f"task {task.get('id')} FAILED: {root_cause(task.get('trace'))}"
    return None
