// A small subset of bytebuffer.js 5.0.1 (`dcodeIO.ByteBuffer`), enough for `Ditto.asByteBuffer`.
