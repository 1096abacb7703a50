package tokenstore

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"path/filepath"
	"strconv"

	"go.uber.org/zap"
)

// DumpFile writes every entry of the closed store in dir as text, one line
// each: the key as the Redis store spells it ("a:" and the hash in hex),
// its expiry, its value. It is what whoever copies the store directory can
// read out of it, for the tests that check what is kept at rest (and for an
// operator's curiosity); it opens the store read-only.
func DumpFile(dir string) ([]byte, error) {
	db, err := openPebble(filepath.Join(dir, DirName), FileOptions{}, zap.NewNop(), true)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	it, err := db.NewIter(nil)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	for ok := it.First(); ok; ok = it.Next() {
		out.WriteString(keyText(it.Key()))
		if exp, payload, ok := splitValue(it.Value()); ok {
			out.WriteString("\texp=" + strconv.FormatInt(exp, 10) + "\t")
			out.Write(payload)
		} else {
			out.WriteString("\t" + strconv.Quote(string(it.Value())))
		}
		out.WriteByte('\n')
	}
	return out.Bytes(), it.Close()
}

// keyText spells a key of this store as text: hashes in hex.
func keyText(k []byte) string {
	if len(k) == 0 {
		return ""
	}
	switch k[0] {
	case prefixCode[0], prefixUsedCode[0], prefixAccess[0], prefixRefresh[0], prefixRotatedOut[0]:
		return string(k[0]) + ":" + hex.EncodeToString(k[1:])
	case kindExpiry:
		if len(k) < 9 {
			break
		}
		return "e:" + strconv.FormatUint(binary.BigEndian.Uint64(k[1:9]), 10) + ":" + keyText(k[9:])
	case kindSubject, kindClient:
		if i := len(k) - 2 - len(Hash{}); i > 0 && k[i] == 0 {
			return string(k[0]) + ":" + strconv.Quote(string(k[1:i])) + ":" + keyText(k[i+1:])
		}
	}
	return string(k[0]) + ":" + strconv.Quote(string(k[1:]))
}
