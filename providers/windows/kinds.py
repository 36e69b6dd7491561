"""The HostState resource types Windows hosts have (no package or user resources yet)."""

from specs.hoststate import CommandResource, DirectoryResource, FileResource, ProcessResource, ServiceResource

WINDOWS_RESOURCES = (FileResource, DirectoryResource, ServiceResource, ProcessResource, CommandResource)
