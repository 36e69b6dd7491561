"""One module per host resource type: a pure `diff` and the shell `script` that applies a change."""

from providers.hosts.posix.resources import command, directory, file, package, service, user

MODULES = {
    "file": file, "directory": directory, "command": command, "service": service, "package": package, "user": user,
}
