package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"strings"

	"github.com/fieldsync/fieldsync/tenant"
)

// loadTLS returns the TLS configuration of the server and the SHA-256
// fingerprint of its certificate: the pair in certFile and keyFile, or
// the self-signed one kept in data/tls/.
func loadTLS(data, certFile, keyFile string, selfSigned bool, hosts []string) (*tls.Config, string, error) {
	var cert tls.Certificate
	var err error
	if selfSigned {
		cert, err = tenant.SelfSigned(data, hosts)
	} else {
		cert, err = tls.LoadX509KeyPair(certFile, keyFile)
	}
	if err != nil {
		return nil, "", fmt.Errorf("TLS certificate: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	return cfg, tenant.Fingerprint(cert.Certificate[0]), nil
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

// Set implements flag.Value.
func (l *stringList) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// isSet reports whether the flag name was given on the command line.
func (c *command) isSet(name string) bool {
	set := false
	c.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}
