import { Link } from "../router";

export function NotFoundPage() {
  return (
    <section>
      <h1>Page not found</h1>
      <p>
        There is nothing at this address. Go to <Link href="/apps">Apps</Link> or{" "}
        <Link href="/runs">Runs</Link>.
      </p>
    </section>
  );
}
