import type { ComponentChildren } from "preact";
import { useEffect } from "preact/hooks";

interface ModalProps {
  title: string;
  onClose: () => void;
  children: ComponentChildren;
  testid?: string;
}

/** A simple modal dialog; Escape or the backdrop closes it. */
export function Modal({ title, onClose, children, testid }: ModalProps) {
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.key === "Escape") onClose();
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [onClose]);
  return (
    <div class="modal-backdrop">
      <div class="modal" role="dialog" aria-modal="true" aria-label={title} data-testid={testid}>
        <h2>{title}</h2>
        {children}
      </div>
    </div>
  );
}

interface ConfirmProps {
  title: string;
  children: ComponentChildren;
  confirmLabel: string;
  busy?: boolean;
  danger?: boolean;
  onConfirm: () => void;
  onCancel: () => void;
}

/** Asks before a destructive or bulk action; the body says exactly what will be affected. */
export function ConfirmDialog(props: ConfirmProps) {
  return (
    <Modal title={props.title} onClose={props.onCancel} testid="confirm">
      <div class="modal-body">{props.children}</div>
      <div class="modal-actions">
        <button type="button" data-testid="confirm-cancel" onClick={props.onCancel}>
          Cancel
        </button>
        <button
          type="button"
          class={props.danger ? "danger" : "primary"}
          data-testid="confirm-ok"
          disabled={props.busy}
          onClick={props.onConfirm}
        >
          {props.busy ? "Working…" : props.confirmLabel}
        </button>
      </div>
    </Modal>
  );
}
