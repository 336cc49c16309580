// Package linkemu emulates the network link between a device and a server
// on loopback: a rate cap each way, added latency, connections cut at
// will, and outages during which the link refuses connections. It runs
// an in-process TCP proxy (toxiproxy as a library) in front of the
// server and counts the bytes that crossed it each way.
package linkemu

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/toxics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Config describes a link. The zero value of every field but Upstream is
// an unlimited, instant link.
type Config struct {
	// Upstream is the server's host:port.
	Upstream string
	// Rate caps the bytes per second in each direction; 0 is no cap.
	// 8 Mbit/s is 1,000,000.
	Rate int64
	// Latency is added to every chunk in each direction (one way); Jitter
	// varies it by up to that much either side.
	Latency, Jitter time.Duration
}

// Link is a running emulated link. It is safe for concurrent use.
type Link struct {
	cfg   Config
	proxy *toxiproxy.Proxy
	up    *counter // device → server, counted after the rate cap
	down  *counter // server → device

	mu    sync.Mutex
	isUp  bool
	cuts  int
	downs int
}

var (
	registerOnce sync.Once
	names        atomic.Int64
)

// Start listens on a free loopback port and relays to cfg.Upstream.
func Start(cfg Config) (*Link, error) {
	if cfg.Upstream == "" {
		return nil, errors.New("linkemu: Config.Upstream is required")
	}
	if cfg.Rate < 0 || cfg.Latency < 0 || cfg.Jitter < 0 {
		return nil, errors.New("linkemu: rate, latency and jitter cannot be negative")
	}
	registerOnce.Do(func() {
		toxics.Register(counterType, new(counter))
		// The proxy's toxics log through zerolog's global logger; the
		// link reports through its own API instead.
		zerolog.SetGlobalLevel(zerolog.Disabled)
	})
	api := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	name := fmt.Sprintf("link%d", names.Add(1))
	p := toxiproxy.NewProxy(api, name, "127.0.0.1:0", cfg.Upstream)
	if err := p.Start(); err != nil {
		return nil, fmt.Errorf("linkemu: %w", err)
	}
	l := &Link{cfg: cfg, proxy: p, isUp: true}
	var err error
	for _, dir := range []string{"upstream", "downstream"} {
		if cfg.Rate > 0 {
			// The toxic's rate unit is 1,000 bytes a second.
			kb := max(cfg.Rate/1000, 1)
			if err = l.addToxic("bandwidth", dir, fmt.Sprintf(`{"rate":%d}`, kb)); err != nil {
				break
			}
		}
		if cfg.Latency > 0 {
			attrs := fmt.Sprintf(`{"latency":%d,"jitter":%d}`, cfg.Latency.Milliseconds(), cfg.Jitter.Milliseconds())
			if err = l.addToxic("latency", dir, attrs); err != nil {
				break
			}
		}
		var w *toxics.ToxicWrapper
		w, err = p.Toxics.AddToxicJson(strings.NewReader(fmt.Sprintf(`{"type":%q,"stream":%q,"name":"count_%s"}`, counterType, dir, dir)))
		if err != nil {
			break
		}
		c := w.Toxic.(*counter)
		if dir == "upstream" {
			l.up = c
		} else {
			l.down = c
		}
	}
	if err != nil {
		p.Stop()
		return nil, fmt.Errorf("linkemu: %w", err)
	}
	return l, nil
}

func (l *Link) addToxic(typ, dir, attrs string) error {
	_, err := l.proxy.Toxics.AddToxicJson(strings.NewReader(
		fmt.Sprintf(`{"type":%q,"stream":%q,"name":"%s_%s","attributes":%s}`, typ, dir, typ, dir, attrs)))
	return err
}

// Addr is the link's host:port: dial it instead of the server.
func (l *Link) Addr() string {
	l.proxy.Lock()
	defer l.proxy.Unlock()
	return l.proxy.Listen
}

// URL is "http://" + Addr().
func (l *Link) URL() string { return "http://" + l.Addr() }

// Cut closes every open connection through the link, as a dropped radio
// link does; new connections are accepted at once.
func (l *Link) Cut() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.isUp {
		return nil
	}
	l.cuts++
	l.proxy.Stop()
	return l.restart()
}

// Down cuts every open connection and refuses new ones until Up.
func (l *Link) Down() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.isUp {
		return
	}
	l.downs++
	l.isUp = false
	l.proxy.Stop()
}

// Up accepts connections again after Down.
func (l *Link) Up() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.isUp {
		return nil
	}
	l.isUp = true
	return l.restart()
}

// restart listens again on the same port. Another process may have taken
// the port meanwhile; then the link reports it.
func (l *Link) restart() error {
	if err := l.proxy.Start(); err != nil {
		return fmt.Errorf("linkemu: listen again on %s: %w", l.proxy.Listen, err)
	}
	return nil
}

// Stats are the link's counts so far.
type Stats struct {
	BytesUp   int64 // device → server bytes that crossed the link
	BytesDown int64 // server → device
	Cuts      int
	Downs     int
}

// Stats returns the counts so far.
func (l *Link) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Stats{BytesUp: l.up.n.Load(), BytesDown: l.down.n.Load(), Cuts: l.cuts, Downs: l.downs}
}

// Close stops the link and closes its connections.
func (l *Link) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.isUp = false
	l.proxy.Stop()
}

const counterType = "fieldsync_count"

// counter is a toxic that passes data on unchanged and counts it. One
// counter serves every connection of its direction.
type counter struct {
	n atomic.Int64
}

// Pipe relays chunks and counts their bytes.
func (c *counter) Pipe(stub *toxics.ToxicStub) {
	for {
		select {
		case <-stub.Interrupt:
			return
		case p := <-stub.Input:
			if p == nil {
				stub.Close()
				return
			}
			c.n.Add(int64(len(p.Data)))
			select {
			case stub.Output <- p:
			case <-stub.Interrupt:
				// Deliver what was taken before giving way.
				_ = stub.WriteOutput(p, 5*time.Second)
				return
			}
		}
	}
}
