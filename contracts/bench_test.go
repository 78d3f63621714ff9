package contracts

import "testing"

func BenchmarkCheckEvent(b *testing.B) {
	data := mustJSON(b, eventExamples[eventKey{"order.placed", 2}])
	b.ReportAllocs()
	for b.Loop() {
		if err := CheckEvent("order.placed", 2, data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	data := mustJSON(b, eventExamples[eventKey{"payment.settled", 1}])
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode("payment.settled", 1, data); err != nil {
			b.Fatal(err)
		}
	}
}
