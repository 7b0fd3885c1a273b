package cheap

// A writer for the few profile.proto messages a heap profile needs (the
// schema is github.com/google/pprof/proto/profile.proto), in the manner of
// runtime/pprof's own encoder: a handful of functions instead of a module
// dependency. Field numbers are the schema's.

import (
	"bytes"
	"compress/gzip"
)

type protoBuf struct {
	data  []byte
	child *protoBuf // reused for every nested message at the next depth
}

func (b *protoBuf) varint(x uint64) {
	for x >= 0x80 {
		b.data = append(b.data, byte(x)|0x80)
		x >>= 7
	}
	b.data = append(b.data, byte(x))
}

func (b *protoBuf) tag(field, wire int) {
	b.varint(uint64(field)<<3 | uint64(wire))
}

// uint64Field and int64Field omit zeros, as proto3 does.
func (b *protoBuf) uint64Field(field int, x uint64) {
	if x != 0 {
		b.tag(field, 0)
		b.varint(x)
	}
}

func (b *protoBuf) int64Field(field int, x int64) {
	b.uint64Field(field, uint64(x))
}

func (b *protoBuf) boolField(field int, x bool) {
	if x {
		b.uint64Field(field, 1)
	}
}

func (b *protoBuf) bytesField(field int, data []byte) {
	b.tag(field, 2)
	b.varint(uint64(len(data)))
	b.data = append(b.data, data...)
}

// packed writes a repeated integer field in the packed encoding.
func (b *protoBuf) packed(field int, xs []uint64) {
	if len(xs) == 0 {
		return
	}
	inner := b.nested()
	for _, x := range xs {
		inner.varint(x)
	}
	b.bytesField(field, inner.data)
}

// message writes a nested message built by fill.
func (b *protoBuf) message(field int, fill func(*protoBuf)) {
	inner := b.nested()
	fill(inner)
	b.bytesField(field, inner.data)
}

// nested is the emptied buffer of the next depth.
func (b *protoBuf) nested() *protoBuf {
	if b.child == nil {
		b.child = &protoBuf{}
	}
	b.child.data = b.child.data[:0]
	return b.child
}

// The profile as the handler builds it.

type valueType struct{ typ, unit int64 } // string-table indexes

type label struct {
	key, str int64
	num      int64
}

type sample struct {
	locations []uint64
	values    []int64
	labels    []label
}

type mapping struct {
	id, start, limit, offset uint64
	file                     int64
	buildID                  int64
	hasFunctions             bool
}

type line struct {
	function uint64
	line     int64
}

type location struct {
	id, mapping, address uint64
	lines                []line
}

type function struct {
	id                     uint64
	name, systemName, file int64
}

type profile struct {
	sampleTypes   []valueType
	samples       []sample
	mappings      []mapping
	locations     []location
	functions     []function
	strings       []string
	timeNanos     int64
	durationNanos int64
	periodType    valueType
	period        int64
	comments      []int64
	defaultType   int64
}

func (p *profile) encode() []byte {
	var b protoBuf
	var values []uint64
	for _, vt := range p.sampleTypes {
		b.message(1, vt.encode)
	}
	for i := range p.samples {
		s := &p.samples[i]
		b.message(2, func(m *protoBuf) {
			m.packed(1, s.locations)
			values = values[:0]
			for _, v := range s.values {
				values = append(values, uint64(v))
			}
			m.packed(2, values)
			for _, l := range s.labels {
				m.message(3, func(lm *protoBuf) {
					lm.int64Field(1, l.key)
					lm.int64Field(2, l.str)
					lm.int64Field(3, l.num)
				})
			}
		})
	}
	for _, mp := range p.mappings {
		b.message(3, func(m *protoBuf) {
			m.uint64Field(1, mp.id)
			m.uint64Field(2, mp.start)
			m.uint64Field(3, mp.limit)
			m.uint64Field(4, mp.offset)
			m.int64Field(5, mp.file)
			m.int64Field(6, mp.buildID)
			m.boolField(7, mp.hasFunctions)
			m.boolField(8, mp.hasFunctions)
			m.boolField(9, mp.hasFunctions)
			m.boolField(10, mp.hasFunctions)
		})
	}
	for i := range p.locations {
		loc := &p.locations[i]
		b.message(4, func(m *protoBuf) {
			m.uint64Field(1, loc.id)
			m.uint64Field(2, loc.mapping)
			m.uint64Field(3, loc.address)
			for _, ln := range loc.lines {
				m.message(4, func(lm *protoBuf) {
					lm.uint64Field(1, ln.function)
					lm.int64Field(2, ln.line)
				})
			}
		})
	}
	for _, fn := range p.functions {
		b.message(5, func(m *protoBuf) {
			m.uint64Field(1, fn.id)
			m.int64Field(2, fn.name)
			m.int64Field(3, fn.systemName)
			m.int64Field(4, fn.file)
		})
	}
	for _, s := range p.strings {
		b.bytesField(6, []byte(s))
	}
	b.int64Field(9, p.timeNanos)
	b.int64Field(10, p.durationNanos)
	b.message(11, p.periodType.encode)
	b.int64Field(12, p.period)
	for _, c := range p.comments {
		b.int64Field(13, c)
	}
	b.int64Field(14, p.defaultType)
	return b.data
}

func (vt valueType) encode(m *protoBuf) {
	m.int64Field(1, vt.typ)
	m.int64Field(2, vt.unit)
}

// gzipped is the profile as /debug/pprof endpoints serve it.
func (p *profile) gzipped() []byte {
	var out bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&out, gzip.BestSpeed)
	zw.Write(p.encode())
	zw.Close()
	return out.Bytes()
}
