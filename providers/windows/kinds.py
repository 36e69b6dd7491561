"""The HostState resource types Windows hosts have (packages are MSI packages; no user resource yet)."""

from specs.hoststate import (
    CommandResource,
    DirectoryResource,
    FileResource,
    PackageResource,
    ProcessResource,
    ServiceResource,
)

WINDOWS_RESOURCES = (FileResource, DirectoryResource, ServiceResource, ProcessResource, CommandResource,
                     PackageResource)
