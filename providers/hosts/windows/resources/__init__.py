"""One module per resource type Windows hosts have (packages are MSI packages; no user resource yet), each
with its fact call, a pure `diff`, the prelude calls of a change (`steps`) and of its undo (`undo`)."""

from types import ModuleType

from providers.hosts.windows.resources import command, directory, file, package, process, service

MODULES: dict[str, ModuleType] = {
    "file": file, "directory": directory, "service": service, "process": process, "package": package,
    "command": command,
}
