// Package checkoutrun tests the checkout runner of services/checkout
// against the real order service and fake listing and payment services:
// the checkout module may not import another service, even in its tests.
package checkoutrun
