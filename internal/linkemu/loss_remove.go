package linkemu

import (
	"context"
	"errors"
	"fmt"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
)

// RemoveLoss takes the loss that AddLoss added off both directions of the
// link: from then on no segment is lost, on open connections too. A
// stall under way ends at once. The LossCounter keeps its count. A link
// with no loss is left as it is.
func (l *Link) RemoveLoss() error {
	for _, dir := range []string{"upstream", "downstream"} {
		err := l.proxy.Toxics.RemoveToxic(context.Background(), "loss_"+dir)
		if err != nil && !errors.Is(err, toxiproxy.ErrToxicNotFound) {
			return fmt.Errorf("linkemu: remove loss: %w", err)
		}
	}
	return nil
}
