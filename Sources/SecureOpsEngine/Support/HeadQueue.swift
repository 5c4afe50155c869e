/// A first-in, first-out queue on an array and a head index: taking from
/// the front moves the index, not the elements, and the array is compacted
/// only when the taken part is large and most of it (so a long queue that
/// drains a little each turn costs O(1) per element, amortized).
struct HeadQueue<Element> {
    private var elements: [Element] = []
    private var head = 0

    var isEmpty: Bool { head == elements.count }
    var count: Int { elements.count - head }
    var first: Element? { isEmpty ? nil : elements[head] }
    var last: Element? { isEmpty ? nil : elements[elements.count - 1] }

    mutating func append(_ element: Element) {
        elements.append(element)
    }

    /// Takes the front element if `condition` holds for it.
    mutating func popFirst(where condition: (Element) -> Bool) -> Element? {
        guard !isEmpty, condition(elements[head]) else { return nil }
        defer { advance(by: 1) }
        return elements[head]
    }

    mutating func popFirst() -> Element? {
        popFirst { _ in true }
    }

    private mutating func advance(by taken: Int) {
        head += taken
        assert(head <= elements.count, "the head stays within the queue")
        if head == elements.count {
            elements.removeAll(keepingCapacity: true)
            head = 0
        } else if head > 4096 && head * 2 > elements.count {
            elements.removeFirst(head)
            head = 0
        }
    }
}
