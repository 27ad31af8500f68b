"""``containerd.services.images.v1.Images``: image records in the caller's namespace.

A ``sync`` delete waits for the garbage collector, so the image's content is gone when it
returns (unless something else holds it).
"""

from __future__ import annotations

from google.protobuf import empty_pb2, timestamp_pb2

from pycontainerd import errdefs
from pycontainerd.api.containerd.events import image_pb2 as events_pb2
from pycontainerd.api.containerd.services.images.v1 import images_pb2
from pycontainerd.api.containerd.types import descriptor_pb2
from pycontainerd.daemon.rpc import RPCServer, ServicerContext
from pycontainerd.daemon.services.base import namespace_of
from pycontainerd.daemon.services.events import publisher
from pycontainerd.descriptor import Descriptor
from pycontainerd.events import Publisher
from pycontainerd.gc.scheduler import Scheduler, gc_scheduler
from pycontainerd.metadata import DB, Image, ImageStore
from pycontainerd.plugin import InitContext, Registration, Type

__all__ = ["ImagesService", "image_from_proto", "image_to_proto", "registration"]


def _timestamp(ns: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(ns)
    return ts


def image_to_proto(image: Image) -> images_pb2.Image:
    return images_pb2.Image(
        name=image.name,
        labels=dict(image.labels),
        target=descriptor_pb2.Descriptor(
            media_type=image.target.media_type,
            digest=image.target.digest,
            size=image.target.size,
            annotations=dict(image.target.annotations),
        ),
        created_at=_timestamp(image.created_at),
        updated_at=_timestamp(image.updated_at),
    )


def image_from_proto(image: images_pb2.Image) -> Image:
    t = image.target
    return Image(
        name=image.name,
        labels=dict(image.labels),
        target=Descriptor(t.media_type, t.digest, t.size, dict(t.annotations)),
    )


class ImagesService:
    """Images over the metadata store; publishes ``/images/*`` events."""

    def __init__(
        self, store: ImageStore, gc: Scheduler | None = None, events: Publisher | None = None
    ) -> None:
        self._store = store
        self._gc = gc
        self._events = events

    def register(self, server: RPCServer) -> None:
        server.add_service(images_pb2.DESCRIPTOR.services_by_name["Images"], self)

    async def Get(
        self, request: images_pb2.GetImageRequest, context: ServicerContext
    ) -> images_pb2.GetImageResponse:
        image = self._store.get(namespace_of(context), request.name)
        return images_pb2.GetImageResponse(image=image_to_proto(image))

    async def List(
        self, request: images_pb2.ListImagesRequest, context: ServicerContext
    ) -> images_pb2.ListImagesResponse:
        images = self._store.list(namespace_of(context), request.filters)
        return images_pb2.ListImagesResponse(images=[image_to_proto(i) for i in images])

    async def Create(
        self, request: images_pb2.CreateImageRequest, context: ServicerContext
    ) -> images_pb2.CreateImageResponse:
        ns = namespace_of(context)
        image = self._store.create(ns, image_from_proto(request.image))
        if self._events is not None:
            event = events_pb2.ImageCreate(name=image.name, labels=dict(image.labels))
            self._events.publish(ns, "/images/create", event)
        return images_pb2.CreateImageResponse(image=image_to_proto(image))

    async def Update(
        self, request: images_pb2.UpdateImageRequest, context: ServicerContext
    ) -> images_pb2.UpdateImageResponse:
        paths = list(request.update_mask.paths) if request.HasField("update_mask") else []
        ns = namespace_of(context)
        image = self._store.update(ns, image_from_proto(request.image), paths)
        if self._events is not None:
            event = events_pb2.ImageUpdate(name=image.name, labels=dict(image.labels))
            self._events.publish(ns, "/images/update", event)
        return images_pb2.UpdateImageResponse(image=image_to_proto(image))

    async def Delete(
        self, request: images_pb2.DeleteImageRequest, context: ServicerContext
    ) -> empty_pb2.Empty:
        ns = namespace_of(context)
        self._store.delete(ns, request.name)
        if self._events is not None:
            self._events.publish(ns, "/images/delete", events_pb2.ImageDelete(name=request.name))
        if request.sync:
            if self._gc is None:
                raise errdefs.FailedPrecondition(
                    f'delete image "{request.name}": no garbage collector to wait for'
                )
            await self._gc.schedule_and_wait_async()
        return empty_pb2.Empty()


def _init(ic: InitContext) -> ImagesService:
    db = ic.get(Type.METADATA)
    assert isinstance(db, DB)
    return ImagesService(ImageStore(db), gc_scheduler(ic), publisher(ic))


registration = Registration(
    type=Type.GRPC, id="images", init=_init, requires=(Type.EVENT, Type.METADATA, Type.GC)
)
